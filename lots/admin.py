from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone

from lots import services
from lots.models import Auction, Lot, LotEvent, LotStatus, Registration, Watch
from ops.exceptions import DomainError


class ReadOnlyAdmin(admin.ModelAdmin):
    """Append-only records (events, bids): nothing to add, edit or delete."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(LotEvent)
class LotEventAdmin(ReadOnlyAdmin):
    list_display = ("lot", "seq", "type", "created_at")
    list_filter = ("type",)
    list_select_related = ("lot",)


def _run_on_each(modeladmin, request: HttpRequest, queryset: QuerySet, action, verb: str) -> None:
    """Apply a lot service to each selected lot, reporting refusals by code."""
    done = 0
    for lot_id in queryset.values_list("pk", flat=True):
        try:
            action(lot_id=lot_id, actor=request.user)
            done += 1
        except DomainError as exc:
            modeladmin.message_user(request, f"Lot {lot_id}: {exc.message} ({exc.code})", messages.WARNING)
    if done:
        modeladmin.message_user(request, f"{verb} {done} lot(s).", messages.SUCCESS)


@admin.action(description="Open selected lots now")
def open_now(modeladmin, request, queryset):
    _run_on_each(modeladmin, request, queryset, services.open_lot, "Opened")


@admin.action(description="Close selected lots now")
def close_now(modeladmin, request, queryset):
    _run_on_each(modeladmin, request, queryset, services.close_lot, "Closed")


@admin.action(description="Cancel selected lots")
def cancel(modeladmin, request, queryset):
    _run_on_each(modeladmin, request, queryset, services.cancel_lot, "Cancelled")


class LotAdminForm(forms.ModelForm):
    """The lot form; a refusal by the lot services on save is shown as its error."""

    # Set per request by `LotAdmin.get_form` after the services refused this very POST.
    refusal: DomainError | None = None

    def clean(self):
        cleaned = super().clean()
        if self.refusal is not None:
            field = self.refusal.extra.get("field")
            self.add_error(field if field in self.fields else None, f"{self.refusal.message} ({self.refusal.code})")
        return cleaned


class LotAddForm(LotAdminForm):
    """The add form: like a lot created over the API, it opens at its start (now, if that has passed)
    unless it is kept a draft."""

    draft = forms.BooleanField(
        required=False,
        help_text="Keep it closed to bids and off the public list until the Open action; "
        "otherwise it opens at its start, or now if the start has passed.",
    )


class LotRefused(Exception):
    """A lot service refused the admin's save: carries the DomainError back to `changeform_view`."""

    def __init__(self, error: DomainError) -> None:
        super().__init__(error.message)
        self.error = error


# What the admin may change; `update_lot` checks it under the lot's lock like the API's PATCH.
# Not `hard_ends_at`: the services work it out from the end, as for the API when it is not sent.
SERVICE_FIELDS = (
    "auction",
    "lot_number",
    "title",
    "description",
    "image",
    "currency",
    "starting_price",
    "reserve_price",
    "buy_now_price",
    "bid_increment",
    "starts_at",
    "ends_at",
    "soft_close_seconds",
)


def _status_note(lot: Lot) -> str | None:
    """What a save left the lot as, when that is not plain from the form: a draft, or opening later."""
    if lot.status == LotStatus.DRAFT:
        return "Saved as a draft: use the Open action to open bidding."
    if lot.status == LotStatus.SCHEDULED:
        if lot.starts_at <= timezone.now():
            # The save woke the clocks; the API's PATCH leaves it the same.
            return "Scheduled: its start has passed, so the clock opens bidding at once."
        return f"Scheduled: bidding opens at {timezone.localtime(lot.starts_at):%Y-%m-%d %H:%M:%S %Z}."
    return None


@admin.register(Lot)
class LotAdmin(admin.ModelAdmin):
    """Every write goes through the lot services, as over the API: the lot's lock, its rules, its
    events (`LOT_UPDATED`, a new `seq`) and the clock's wake-up. A refusal is shown on the form."""

    list_display = ("title", "status", "auction", "currency", "current_price", "bid_count", "high_bidder", "ends_at")
    list_filter = ("status", "auction")
    search_fields = ("title", "description", "seller__username")
    list_select_related = ("auction", "high_bidder")
    raw_id_fields = ("seller",)
    inlines: list = []
    actions = [open_now, close_now, cancel]
    form = LotAdminForm
    # The bidding state, the clock's bookkeeping and the hard end change only through the services
    # (under the lot lock): edited by hand they would contradict the bids and the events sent.
    readonly_fields = (
        "hard_ends_at",
        "status",
        "current_price",
        "high_bidder",
        "high_max_amount",
        "bid_count",
        "winner",
        "final_price",
        "closed_at",
        "ending_soon_sent_at",
        "seq",
        "created_at",
        "updated_at",
    )

    def get_readonly_fields(self, request, obj=None):
        # Prices stay editable once bids exist: `update_lot` refuses the change (`lot_has_bids`) with
        # a visible error, also when the first bid arrived after the form was opened.
        if obj is not None:
            return (*self.readonly_fields, "seller")  # as over the API: a lot keeps its seller
        return self.readonly_fields

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = LotAddForm
        form = super().get_form(request, obj, change=change, **kwargs)
        form.refusal = getattr(request, "lot_refusal", None)
        return form

    def get_changeform_initial_data(self, request):
        # The currency the services give a lot created without one.
        return {"currency": settings.AUCTION_DEFAULT_CURRENCY, **super().get_changeform_initial_data(request)}

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except LotRefused as refused:
            # The save's transaction rolled back; validate the same POST again, the refusal
            # now an error of the form, which is shown with what the user typed.
            request.lot_refusal = refused.error
            return super().changeform_view(request, object_id, form_url, extra_context)

    def save_model(self, request, obj, form, change) -> None:
        data = form.cleaned_data
        if data.get("image") is False:  # "Clear" ticked
            data = {**data, "image": ""}
        try:
            if change:
                changes = {name: data[name] for name in form.changed_data if name in SERVICE_FIELDS}
                lot = services.update_lot(lot_id=obj.pk, actor=request.user, changes=changes)
            else:
                fields = {name: data[name] for name in SERVICE_FIELDS if data.get(name) not in (None, "")}
                lot = services.create_lot(seller=data["seller"], actor=request.user, draft=data["draft"], **fields)
        except DomainError as exc:
            raise LotRefused(exc) from exc
        obj.pk = lot.pk
        obj.refresh_from_db()
        note = _status_note(lot)
        if note:
            self.message_user(request, note, messages.INFO)

    def delete_view(self, request, object_id, extra_context=None):
        try:
            return super().delete_view(request, object_id, extra_context)
        except LotRefused as refused:
            self.message_user(request, f"{refused.error.message} ({refused.error.code})", messages.ERROR)
            return HttpResponseRedirect(reverse("admin:lots_lot_change", args=[object_id]))

    def delete_model(self, request, obj) -> None:
        try:
            services.delete_lot(lot_id=obj.pk, actor=request.user)
        except DomainError as exc:
            raise LotRefused(exc) from exc

    def delete_queryset(self, request, queryset) -> None:
        """The bulk "Delete selected" action: each lot through `delete_lot`, refusals reported."""
        for lot_id in queryset.values_list("pk", flat=True):
            try:
                services.delete_lot(lot_id=lot_id, actor=request.user)
            except DomainError as exc:
                self.message_user(request, f"Lot {lot_id}: {exc.message} ({exc.code})", messages.ERROR)


class LotInline(admin.TabularInline):
    model = Lot
    fields = ("title", "status", "current_price", "bid_count", "ends_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.action(description="Stagger lot ends: the first at the sale's end, then every 'stagger seconds'")
def stagger_lots(modeladmin, request, queryset):
    for auction in queryset:
        if auction.ends_at is None:
            modeladmin.message_user(request, f"{auction}: set the sale's end first.", messages.WARNING)
            continue
        try:
            lots = services.stagger_auction_lots(
                auction=auction,
                actor=request.user,
                first_ends_at=auction.ends_at,
                interval_seconds=auction.stagger_seconds,
            )
        except DomainError as exc:
            modeladmin.message_user(request, f"{auction}: {exc.message} ({exc.code})", messages.WARNING)
            continue
        modeladmin.message_user(request, f"{auction}: {len(lots)} lot(s) rescheduled.", messages.SUCCESS)


@admin.register(Auction)
class AuctionAdmin(admin.ModelAdmin):
    list_display = ("title", "slug", "starts_at", "ends_at", "stagger_seconds")
    prepopulated_fields = {"slug": ("title",)}
    search_fields = ("title",)
    inlines = [LotInline]
    actions = [stagger_lots]

    def save_model(self, request, obj: Auction, form, change) -> None:
        data = form.cleaned_data
        if change:
            auction = services.update_auction(
                auction_id=obj.pk, changes={name: data[name] for name in form.changed_data}
            )
        else:
            auction = services.create_auction(**{name: data[name] for name in form.fields if name in data})
        obj.pk = auction.pk
        obj.refresh_from_db()


@admin.register(Watch)
class WatchAdmin(admin.ModelAdmin):
    """Users' watchlists as they made them: staff may look, and take a watch off through the service."""

    list_display = ("user", "lot", "created_at")
    list_select_related = ("user", "lot")
    search_fields = ("user__username", "lot__title")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def delete_model(self, request, obj: Watch) -> None:
        services.unwatch_lot(lot_id=obj.lot_id, user=obj.user)

    def delete_queryset(self, request, queryset: QuerySet[Watch]) -> None:
        for watch in queryset.select_related("user"):
            services.unwatch_lot(lot_id=watch.lot_id, user=watch.user)


def _decide(modeladmin, request, queryset, decision: str, verb: str) -> None:
    done = 0
    for registration_id in queryset.values_list("pk", flat=True):
        try:
            services.decide_registration(registration_id=registration_id, actor=request.user, decision=decision)
            done += 1
        except DomainError as exc:
            modeladmin.message_user(request, f"Registration {registration_id}: {exc.message}", messages.WARNING)
    if done:
        modeladmin.message_user(request, f"{verb} {done} registration(s).", messages.SUCCESS)


@admin.action(description="Approve selected registrations")
def approve(modeladmin, request, queryset):
    _decide(modeladmin, request, queryset, "approve", "Approved")


@admin.action(description="Reject selected registrations")
def reject(modeladmin, request, queryset):
    _decide(modeladmin, request, queryset, "reject", "Rejected")


@admin.action(description="Revoke selected registrations")
def revoke(modeladmin, request, queryset):
    _decide(modeladmin, request, queryset, "revoke", "Revoked")


@admin.register(Registration)
class RegistrationAdmin(admin.ModelAdmin):
    list_display = ("auction", "paddle_number", "user", "status", "created_at", "decided_at")
    list_filter = ("status", "auction")
    search_fields = ("user__username", "user__email")
    list_select_related = ("auction", "user")
    readonly_fields = ("auction", "user", "paddle_number", "status", "created_at", "decided_at", "decided_by")
    actions = [approve, reject, revoke]

    def has_add_permission(self, request) -> bool:
        return False
