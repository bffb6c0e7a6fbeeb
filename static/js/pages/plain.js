// A page with nothing live on it (the 404 page): only the navigation's login state.
import { initPage } from "../ui.js";

initPage();
