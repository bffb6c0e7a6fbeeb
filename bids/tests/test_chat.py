"""A chat room per lot: posting, broadcasting after commit, limits, moderation; REST, WebSocket, admin."""

import json

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import transaction

from bids.models import ChatMessage
from bids.services import hide_chat_message, post_chat_message
from lots.exceptions import NotLotManager
from ops.exceptions import DomainError

pytestmark = pytest.mark.django_db

SCRIPT = "<script>alert(1)</script> & <b>bold</b>"


class Boom(Exception):
    pass


def say(lot, user, text="Is the shade original?") -> ChatMessage:
    return post_chat_message(lot_id=lot.pk, author=user, text=text)


def code_of(func, **kwargs) -> str:
    with pytest.raises(DomainError) as caught:
        func(**kwargs)
    return caught.value.code


def chat_frames(inbox, lot) -> list[dict]:
    """The chat frames the lot's room was sent since the last read."""
    messages = inbox.lot_messages(lot)
    assert all(m["type"] == "text" for m in messages), messages
    return [json.loads(m["text"]) for m in messages]


# --- Posting -------------------------------------------------------------------------------


def test_message_is_stored_and_broadcast_after_commit(make_lot, bidder, inbox, django_capture_on_commit_callbacks):
    lot = make_lot()
    inbox.watch_lot(lot)

    with django_capture_on_commit_callbacks() as callbacks:
        message = say(lot, bidder, "  Is the shade original?  ")
        assert chat_frames(inbox, lot) == []  # nothing before the commit
    for callback in callbacks:
        callback()

    stored = ChatMessage.objects.get()
    assert (stored.pk, stored.lot, stored.user, stored.text) == (message.pk, lot, bidder, "Is the shade original?")
    assert (stored.is_seller, stored.hidden) == (False, False)
    [frame] = chat_frames(inbox, lot)
    assert frame["type"] == "CHAT_MESSAGE"
    assert (frame["id"], frame["user"], frame["text"], frame["is_seller"]) == (
        message.pk,
        "alice",
        "Is the shade original?",
        False,
    )
    assert frame["created_at"]
    assert "seq" not in frame  # chat is not lot state


def test_nothing_is_stored_or_broadcast_on_rollback(make_lot, bidder, inbox, django_capture_on_commit_callbacks):
    lot = make_lot()
    inbox.watch_lot(lot)

    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(Boom),
        transaction.atomic(),
    ):
        say(lot, bidder)
        raise Boom

    assert callbacks == []
    assert not ChatMessage.objects.exists()
    assert chat_frames(inbox, lot) == []


def test_sellers_messages_are_marked(make_lot, seller, bidder, inbox, django_capture_on_commit_callbacks):
    lot = make_lot()
    inbox.watch_lot(lot)

    with django_capture_on_commit_callbacks(execute=True):
        say(lot, bidder, "Any damage?")
        say(lot, seller, "None at all.")

    assert [(f["user"], f["is_seller"]) for f in chat_frames(inbox, lot)] == [("alice", False), ("sam_seller", True)]
    assert list(ChatMessage.objects.order_by("id").values_list("is_seller", flat=True)) == [False, True]


@pytest.mark.parametrize("text", ["", "   ", "\n\t", None, 5, ["hi"]])
def test_empty_or_non_text_is_invalid_text(make_lot, bidder, text):
    lot = make_lot()

    assert code_of(post_chat_message, lot_id=lot.pk, author=bidder, text=text) == "invalid_text"
    assert not ChatMessage.objects.exists()


def test_longest_message_passes_and_one_more_character_is_too_long(make_lot, bidder):
    lot = make_lot()
    longest = "x" * settings.CHAT_MAX_LENGTH

    say(lot, bidder, f"  {longest}  ")  # surrounding blanks do not count

    assert settings.CHAT_MAX_LENGTH == 500
    assert code_of(post_chat_message, lot_id=lot.pk, author=bidder, text=longest + "x") == "text_too_long"
    assert list(ChatMessage.objects.values_list("text", flat=True)) == [longest]


def test_unknown_or_draft_lot_has_no_room(make_lot, bidder):
    draft = make_lot(draft=True)

    assert code_of(post_chat_message, lot_id=draft.pk, author=bidder, text="hello") == "lot_not_found"
    assert code_of(post_chat_message, lot_id=999_999, author=bidder, text="hello") == "lot_not_found"
    assert not ChatMessage.objects.exists()


def test_per_user_message_rate(make_lot, bidder, other_bidder):
    first, second = make_lot(), make_lot()
    for n in range(settings.CHAT_MESSAGES_PER_MINUTE):
        say(first if n % 2 else second, bidder, f"message {n}")

    # The allowance is the user's, across every room.
    assert settings.CHAT_MESSAGES_PER_MINUTE == 10
    assert code_of(post_chat_message, lot_id=first.pk, author=bidder, text="one too many") == "rate_limited"
    assert code_of(post_chat_message, lot_id=second.pk, author=bidder, text="one too many") == "rate_limited"
    say(first, other_bidder, "my own allowance")
    assert ChatMessage.objects.filter(user=bidder).count() == 10
    assert ChatMessage.objects.filter(user=other_bidder).count() == 1


def test_text_is_stored_verbatim(make_lot, bidder):
    lot = make_lot()

    say(lot, bidder, SCRIPT)

    assert ChatMessage.objects.get().text == SCRIPT


# --- Hiding --------------------------------------------------------------------------------


@pytest.mark.parametrize("moderator", ["seller", "staff_user"])
def test_seller_or_staff_hide_a_message(
    request, make_lot, bidder, inbox, django_capture_on_commit_callbacks, moderator
):
    actor = request.getfixturevalue(moderator)
    lot = make_lot()
    message = say(lot, bidder)
    inbox.watch_lot(lot)

    with django_capture_on_commit_callbacks(execute=True):
        hide_chat_message(lot_id=lot.pk, message_id=message.pk, actor=actor)

    message.refresh_from_db()
    assert (message.hidden, message.hidden_by) == (True, actor)
    assert chat_frames(inbox, lot) == [{"type": "CHAT_HIDDEN", "lot_id": lot.pk, "id": message.pk}]


def test_hiding_twice_broadcasts_once(make_lot, bidder, seller, inbox, django_capture_on_commit_callbacks):
    lot = make_lot()
    message = say(lot, bidder)
    hide_chat_message(lot_id=lot.pk, message_id=message.pk, actor=seller)
    inbox.watch_lot(lot)

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        hide_chat_message(lot_id=lot.pk, message_id=message.pk, actor=seller)

    assert callbacks == []
    assert chat_frames(inbox, lot) == []


@pytest.mark.parametrize("who", ["bidder", "other_bidder"])
def test_others_cannot_hide(request, make_lot, bidder, seller, who):
    lot = make_lot()
    message = say(lot, bidder)

    with pytest.raises(NotLotManager) as caught:
        hide_chat_message(lot_id=lot.pk, message_id=message.pk, actor=request.getfixturevalue(who))

    assert caught.value.code == "not_lot_manager"
    assert ChatMessage.objects.get(pk=message.pk).hidden is False


def test_seller_of_another_lot_cannot_hide(make_lot, make_user, bidder):
    lot = make_lot()
    other_seller = make_user("otto_seller")
    make_lot(seller=other_seller)
    message = say(lot, bidder)

    assert code_of(hide_chat_message, lot_id=lot.pk, message_id=message.pk, actor=other_seller) == "not_lot_manager"


def test_hiding_an_unknown_message(make_lot, staff_user):
    lot = make_lot()
    assert code_of(hide_chat_message, lot_id=lot.pk, message_id=999_999, actor=staff_user) == "chat_message_not_found"


def test_a_message_is_hidden_only_through_its_own_lot(make_lot, make_user, bidder):
    # A seller of two lots, moderating from the wrong room, finds nothing there.
    seller_of_both = make_user("two_lots")
    lot, other_lot = make_lot(seller=seller_of_both), make_lot(seller=seller_of_both)
    message = say(lot, bidder)

    assert code_of(hide_chat_message, lot_id=other_lot.pk, message_id=message.pk, actor=seller_of_both) == (
        "chat_message_not_found"
    )
    message.refresh_from_db()
    assert not message.hidden


# --- REST ----------------------------------------------------------------------------------


def chat_url(lot) -> str:
    return f"/api/lots/{lot.pk}/chat/"


def test_anyone_reads_the_chat_newest_first_without_hidden_ones(make_lot, bidder, other_bidder, seller, api_client):
    lot = make_lot()
    first = say(lot, bidder, "first")
    hidden = say(lot, other_bidder, "rude")
    last = say(lot, seller, "last")
    say(make_lot(), bidder, "another room")
    hide_chat_message(lot_id=lot.pk, message_id=hidden.pk, actor=seller)

    response = api_client.get(chat_url(lot))

    assert response.status_code == 200
    rows = response.json()["results"]
    assert [(row["id"], row["user"], row["text"], row["is_seller"]) for row in rows] == [
        (last.pk, "sam_seller", "last", True),
        (first.pk, "alice", "first", False),
    ]
    assert set(rows[0]) == {"id", "user", "text", "is_seller", "created_at"}


def test_chat_is_paginated(make_lot, make_user, api_client):
    lot = make_lot()
    ids = [say(lot, make_user(), f"message {n}").pk for n in range(25)]

    page_one = api_client.get(chat_url(lot)).json()
    page_two = api_client.get(page_one["next"]).json()

    assert page_one["count"] == 25
    assert [row["id"] for row in page_one["results"]] == ids[::-1][:20]
    assert [row["id"] for row in page_two["results"]] == ids[::-1][20:]
    assert page_two["next"] is None


def test_chat_of_a_draft_or_unknown_lot_is_not_found(make_lot, api_client):
    draft = make_lot(draft=True)

    for url in (chat_url(draft), "/api/lots/999999/chat/"):
        response = api_client.get(url)
        assert (response.status_code, response.json()["code"]) == (404, "lot_not_found")


def test_post_a_message(make_lot, bidder, client_for, inbox, django_capture_on_commit_callbacks):
    lot = make_lot()
    inbox.watch_lot(lot)

    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(bidder).post(chat_url(lot), {"text": "Lovely lamp"}, format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["user"], body["text"], body["is_seller"]) == ("alice", "Lovely lamp", False)
    assert ChatMessage.objects.get().pk == body["id"]
    [frame] = chat_frames(inbox, lot)
    assert (frame["type"], frame["id"]) == ("CHAT_MESSAGE", body["id"])


def test_seller_posts_marked_message(make_lot, seller, client_for):
    lot = make_lot()

    response = client_for(seller).post(chat_url(lot), {"text": "Happy to answer."}, format="json")

    assert (response.status_code, response.json()["is_seller"]) == (201, True)


def test_anonymous_cannot_post(make_lot, api_client):
    lot = make_lot()

    response = api_client.post(chat_url(lot), {"text": "hello"}, format="json")

    assert response.status_code == 401
    assert not ChatMessage.objects.exists()


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ({"text": ""}, "invalid_text"),
        ({"text": "    "}, "invalid_text"),
        ({}, "invalid_text"),
        ({"text": None}, "invalid_text"),
        ({"text": "x" * 501}, "text_too_long"),
        ({"text": "x" * 20_000}, "text_too_long"),
    ],
    ids=["empty", "blank", "missing", "null", "501-chars", "20000-chars"],
)
def test_rest_refuses_bad_text_with_its_code(make_lot, bidder, client_for, text, code):
    lot = make_lot()

    response = client_for(bidder).post(chat_url(lot), text, format="json")

    assert (response.status_code, response.json()["code"]) == (400, code)
    assert not ChatMessage.objects.exists()


def test_rest_rate_limit_is_429(make_lot, bidder, client_for):
    lot = make_lot()
    client = client_for(bidder)
    statuses = [client.post(chat_url(lot), {"text": f"m{n}"}, format="json").status_code for n in range(10)]

    response = client.post(chat_url(lot), {"text": "one too many"}, format="json")

    assert statuses == [201] * 10
    assert (response.status_code, response.json()["code"]) == (429, "rate_limited")
    assert ChatMessage.objects.count() == 10


def test_rest_returns_text_verbatim_as_json(make_lot, bidder, client_for, api_client):
    lot = make_lot()

    posted = client_for(bidder).post(chat_url(lot), {"text": SCRIPT}, format="json")
    listed = api_client.get(chat_url(lot))

    assert posted["Content-Type"] == listed["Content-Type"] == "application/json"
    assert posted.json()["text"] == SCRIPT
    assert listed.json()["results"][0]["text"] == SCRIPT


def test_browsable_api_escapes_the_text(make_lot, bidder, api_client):
    lot = make_lot()
    say(lot, bidder, SCRIPT)

    response = api_client.get(chat_url(lot), HTTP_ACCEPT="text/html")

    assert response["Content-Type"].startswith("text/html")
    content = response.content.decode()
    assert "<script>alert(1)</script>" not in content
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in content


@pytest.mark.parametrize("moderator", ["seller", "staff_user"])
def test_rest_hide(request, make_lot, bidder, client_for, inbox, django_capture_on_commit_callbacks, moderator):
    lot = make_lot()
    message = say(lot, bidder)
    inbox.watch_lot(lot)

    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(request.getfixturevalue(moderator)).post(f"{chat_url(lot)}{message.pk}/hide/")

    assert response.status_code == 204
    assert ChatMessage.objects.get(pk=message.pk).hidden is True
    assert chat_frames(inbox, lot) == [{"type": "CHAT_HIDDEN", "lot_id": lot.pk, "id": message.pk}]
    assert client_for(bidder).get(chat_url(lot)).json()["results"] == []


def test_rest_hide_refused_to_others(make_lot, bidder, other_bidder, client_for, api_client):
    lot = make_lot()
    message = say(lot, bidder)
    url = f"{chat_url(lot)}{message.pk}/hide/"

    by_author = client_for(bidder).post(url)
    by_other = client_for(other_bidder).post(url)

    assert (by_author.status_code, by_author.json()["code"]) == (403, "not_lot_manager")
    assert (by_other.status_code, by_other.json()["code"]) == (403, "not_lot_manager")
    assert api_client.post(url).status_code == 401
    assert ChatMessage.objects.get(pk=message.pk).hidden is False


def test_rest_hide_only_within_the_lot(make_lot, bidder, seller, client_for):
    lot, other_lot = make_lot(), make_lot()
    message = say(other_lot, bidder)

    response = client_for(seller).post(f"{chat_url(lot)}{message.pk}/hide/")

    assert (response.status_code, response.json()["code"]) == (404, "chat_message_not_found")
    assert ChatMessage.objects.get(pk=message.pk).hidden is False


# --- Admin ---------------------------------------------------------------------------------

CHANGELIST = "/admin/bids/chatmessage/"


def test_admin_lists_messages_escaped(make_lot, bidder, client, staff_user):
    lot = make_lot()
    say(lot, bidder, SCRIPT)
    client.force_login(staff_user)

    response = client.get(CHANGELIST)

    assert response.status_code == 200
    content = response.content.decode()
    assert "<script>alert(1)</script>" not in content
    assert "<b>bold</b>" not in content
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in content


def test_admin_hides_selected_messages(
    make_lot, bidder, other_bidder, client, staff_user, inbox, django_capture_on_commit_callbacks
):
    lot = make_lot()
    rude, worse, fine = say(lot, bidder, "rude"), say(lot, other_bidder, "worse"), say(lot, bidder, "fine")
    inbox.watch_lot(lot)
    client.force_login(staff_user)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(CHANGELIST, {"action": "hide_messages", "_selected_action": [rude.pk, worse.pk]})

    assert response.status_code == 302
    assert set(ChatMessage.objects.filter(hidden=True).values_list("pk", flat=True)) == {rude.pk, worse.pk}
    assert set(ChatMessage.objects.filter(hidden=True).values_list("hidden_by", flat=True)) == {staff_user.pk}
    assert ChatMessage.objects.get(pk=fine.pk).hidden is False
    assert sorted(f["id"] for f in chat_frames(inbox, lot)) == [rude.pk, worse.pk]


def test_admin_filters_hidden_messages(make_lot, bidder, seller, client, staff_user):
    lot = make_lot()
    hide_chat_message(lot_id=lot.pk, message_id=say(lot, bidder, "gone-message").pk, actor=seller)
    say(lot, bidder, "kept-message")
    client.force_login(staff_user)

    content = client.get(CHANGELIST, {"hidden__exact": "1"}).content.decode()

    assert "gone-message" in content
    assert "kept-message" not in content


def test_admin_cannot_edit_or_add_messages(make_lot, bidder, client, staff_user):
    message = say(make_lot(), bidder, "as written")
    client.force_login(staff_user)

    client.post(f"{CHANGELIST}{message.pk}/change/", {"text": "rewritten"})

    assert client.get(f"{CHANGELIST}add/").status_code == 403
    assert ChatMessage.objects.get(pk=message.pk).text == "as written"


# --- WebSocket -----------------------------------------------------------------------------


@sync_to_async
def stored(lot) -> list[tuple[str, str, bool]]:
    return [(m.user.username, m.text, m.hidden) for m in ChatMessage.objects.filter(lot=lot).order_by("id")]


post = sync_to_async(say)


@pytest.mark.django_db(transaction=True)
async def test_ws_chat_reaches_everyone_in_the_room(ws, new_lot, bidder, other_bidder):
    lot, elsewhere = await new_lot(), await new_lot()
    author, _ = await ws.watch(lot, bidder)
    listener, _ = await ws.watch(lot, other_bidder)
    anonymous, _ = await ws.watch(lot)
    outsider, _ = await ws.watch(elsewhere, other_bidder)

    await author.send({"type": "CHAT", "text": "Is the shade original?"})

    frames = [await socket.next() for socket in (author, listener, anonymous)]
    assert frames[0] == frames[1] == frames[2]
    assert frames[0]["type"] == "CHAT_MESSAGE"
    assert (frames[0]["user"], frames[0]["text"], frames[0]["is_seller"]) == ("alice", "Is the shade original?", False)
    assert isinstance(frames[0]["id"], int) and frames[0]["created_at"]
    await outsider.assert_silent()
    assert await stored(lot) == [("alice", "Is the shade original?", False)]


@pytest.mark.django_db(transaction=True)
async def test_ws_sellers_message_is_marked(ws, new_lot, seller, bidder):
    lot = await new_lot()
    socket, _ = await ws.watch(lot, seller)
    listener, _ = await ws.watch(lot, bidder)

    await socket.send({"type": "CHAT", "text": "Ask me anything."})

    frame = await listener.next()
    assert (frame["type"], frame["user"], frame["is_seller"]) == ("CHAT_MESSAGE", "sam_seller", True)


@pytest.mark.django_db(transaction=True)
async def test_ws_anonymous_reads_but_cannot_write(ws, new_lot, bidder):
    lot = await new_lot()
    await post(lot, bidder, "hello")
    anonymous, _ = await ws.watch(lot)

    refused = await anonymous.request({"type": "CHAT", "text": "me too"})
    history = await anonymous.request({"type": "GET_CHAT"})

    assert (refused["type"], refused["code"]) == ("ERROR", "auth_required")
    assert [(m["user"], m["text"]) for m in history["messages"]] == [("alice", "hello")]
    await anonymous.assert_silent()
    assert await stored(lot) == [("alice", "hello", False)]


@pytest.mark.django_db(transaction=True)
async def test_ws_chat_history_newest_first_limited_without_hidden(ws, new_lot, make_user, seller):
    lot = await new_lot()
    messages = [await post(lot, await sync_to_async(make_user)(), f"message {n}") for n in range(5)]
    await sync_to_async(hide_chat_message)(lot_id=lot.pk, message_id=messages[3].pk, actor=seller)
    socket, _ = await ws.watch(lot)

    everything = await socket.request({"type": "GET_CHAT"})
    latest_two = await socket.request({"type": "GET_CHAT", "limit": 2})
    bad_limit = await socket.request({"type": "GET_CHAT", "limit": 0})

    assert everything["type"] == latest_two["type"] == "CHAT_HISTORY"
    assert [m["text"] for m in everything["messages"]] == ["message 4", "message 2", "message 1", "message 0"]
    assert [m["id"] for m in latest_two["messages"]] == [messages[4].pk, messages[2].pk]
    assert set(everything["messages"][0]) == {"id", "user", "text", "is_seller", "created_at"}
    assert (bad_limit["type"], bad_limit["code"]) == ("ERROR", "invalid_limit")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ({"type": "CHAT", "text": "x" * 501}, "text_too_long"),
        ({"type": "CHAT", "text": "   "}, "invalid_text"),
        ({"type": "CHAT"}, "invalid_text"),
        ({"type": "CHAT", "text": 42}, "invalid_text"),
    ],
    ids=["501-chars", "blank", "missing", "number"],
)
async def test_ws_bad_text_is_an_error(ws, new_lot, bidder, other_bidder, frame, code):
    lot = await new_lot()
    socket, _ = await ws.watch(lot, bidder)
    listener, _ = await ws.watch(lot, other_bidder)

    reply = await socket.request(frame)

    assert (reply["type"], reply["code"]) == ("ERROR", code)
    assert await socket.is_open()
    await listener.assert_silent()
    assert await stored(lot) == []


@pytest.mark.django_db(transaction=True)
async def test_ws_rate_limit(ws, new_lot, bidder, other_bidder):
    lot = await new_lot()
    socket, _ = await ws.watch(lot, bidder)
    listener, _ = await ws.watch(lot, other_bidder)
    for n in range(10):
        await socket.send({"type": "CHAT", "text": f"m{n}"})
        assert (await socket.next())["text"] == f"m{n}"

    refused = await socket.request({"type": "CHAT", "text": "one too many", "request_id": "c11"})

    # The refusal names the request it answers and when to try again, like a bid's.
    assert (refused["type"], refused["code"], refused["request_id"]) == ("ERROR", "rate_limited", "c11")
    assert 0 < refused["retry_after"] <= 60
    assert [(await listener.next())["text"] for _ in range(10)] == [f"m{n}" for n in range(10)]
    # The allowance is per user: someone else in the room still speaks.
    assert (await listener.request({"type": "CHAT", "text": "mine"}))["text"] == "mine"
    await socket.next()  # "mine" reaches the refused bidder too
    await listener.assert_silent()
    assert len(await stored(lot)) == 11


@pytest.mark.django_db(transaction=True)
async def test_ws_chat_errors_name_the_request_they_answer(ws, new_lot, bidder, seller):
    lot = await new_lot()
    socket, _ = await ws.watch(lot, bidder)

    too_long = await socket.request({"type": "CHAT", "text": "x" * 501, "request_id": "long-1"})
    not_yours = await socket.request({"type": "HIDE_CHAT", "id": 1, "request_id": "hide-1"})
    unnamed = await socket.request({"type": "CHAT", "text": "x" * 501})
    bad_id = await socket.request({"type": "CHAT", "text": "hello", "request_id": 7})

    assert (too_long["code"], too_long["request_id"]) == ("text_too_long", "long-1")
    assert not_yours["request_id"] == "hide-1"
    assert unnamed["code"] == "text_too_long" and "request_id" not in unnamed
    # A request_id that is no string is refused before the message is posted.
    assert (bad_id["code"], "request_id" in bad_id) == ("invalid_request_id", False)
    assert await stored(lot) == []


@pytest.mark.django_db(transaction=True)
async def test_ws_and_rest_share_the_allowance(ws, new_lot, bidder, client_for):
    lot = await new_lot()
    client = await sync_to_async(client_for)(bidder)
    for n in range(10):
        response = await sync_to_async(client.post)(chat_url(lot), {"text": f"m{n}"}, format="json")
        assert response.status_code == 201
    socket, _ = await ws.watch(lot, bidder)

    refused = await socket.request({"type": "CHAT", "text": "one too many"})

    assert (refused["type"], refused["code"]) == ("ERROR", "rate_limited")


@pytest.mark.django_db(transaction=True)
async def test_ws_text_comes_back_verbatim(ws, new_lot, bidder):
    lot = await new_lot()
    socket, _ = await ws.watch(lot, bidder)

    frame = await socket.request({"type": "CHAT", "text": SCRIPT})
    history = await socket.request({"type": "GET_CHAT"})

    assert frame["text"] == SCRIPT
    assert history["messages"][0]["text"] == SCRIPT


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("moderator", ["seller", "staff_user"])
async def test_ws_hide_is_broadcast_and_the_message_leaves_the_history(
    ws, new_lot, bidder, other_bidder, seller, staff_user, moderator
):
    lot = await new_lot()
    message = await post(lot, bidder, "rude")
    await post(lot, bidder, "polite")
    actor = {"seller": seller, "staff_user": staff_user}[moderator]
    moderating, _ = await ws.watch(lot, actor)
    listener, _ = await ws.watch(lot, other_bidder)

    hidden = await moderating.request({"type": "HIDE_CHAT", "id": message.pk})

    assert hidden == {"type": "CHAT_HIDDEN", "lot_id": lot.pk, "id": message.pk}
    assert await listener.next() == hidden
    history = await listener.request({"type": "GET_CHAT"})
    assert [m["text"] for m in history["messages"]] == ["polite"]
    assert await stored(lot) == [("alice", "rude", True), ("alice", "polite", False)]


@pytest.mark.django_db(transaction=True)
async def test_ws_others_cannot_hide(ws, new_lot, bidder, other_bidder):
    lot = await new_lot()
    message = await post(lot, bidder, "mine")
    author, _ = await ws.watch(lot, bidder)
    other, _ = await ws.watch(lot, other_bidder)
    anonymous, _ = await ws.watch(lot)

    by_author = await author.request({"type": "HIDE_CHAT", "id": message.pk})
    by_other = await other.request({"type": "HIDE_CHAT", "id": message.pk})
    by_anonymous = await anonymous.request({"type": "HIDE_CHAT", "id": message.pk})
    malformed = await other.request({"type": "HIDE_CHAT", "id": str(message.pk)})

    assert (by_author["type"], by_author["code"]) == ("ERROR", "not_lot_manager")
    assert (by_other["type"], by_other["code"]) == ("ERROR", "not_lot_manager")
    assert (by_anonymous["type"], by_anonymous["code"]) == ("ERROR", "auth_required")
    assert (malformed["type"], malformed["code"]) == ("ERROR", "invalid_message")
    assert await stored(lot) == [("alice", "mine", False)]


@pytest.mark.django_db(transaction=True)
async def test_ws_hiding_an_unknown_message(ws, new_lot, seller):
    lot = await new_lot()
    socket, _ = await ws.watch(lot, seller)

    reply = await socket.request({"type": "HIDE_CHAT", "id": 999_999})

    assert (reply["type"], reply["code"]) == ("ERROR", "chat_message_not_found")
