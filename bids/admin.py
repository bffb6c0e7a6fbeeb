from django.contrib import admin, messages

from auction_site.exceptions import DomainError
from bids import services
from bids.models import Bid, ChatMessage, LotEvent


class ReadOnlyAdmin(admin.ModelAdmin):
    """Bids and events are append-only records: nothing to add, edit or delete."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Bid)
class BidAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "lot",
        "bidder",
        "amount",
        "max_amount",
        "is_proxy",
        "raises_max_only",
        "is_buy_now",
        "created_at",
        "void_reason",
    )
    list_filter = ("is_proxy", "is_buy_now", "void_reason")
    search_fields = ("lot__title", "bidder__username")
    list_select_related = ("lot", "bidder")


@admin.register(LotEvent)
class LotEventAdmin(ReadOnlyAdmin):
    list_display = ("lot", "seq", "type", "created_at")
    list_filter = ("type",)
    list_select_related = ("lot",)


@admin.action(description="Hide selected messages")
def hide_messages(modeladmin, request, queryset):
    for lot_id, message_id in queryset.values_list("lot_id", "pk"):
        try:
            services.hide_chat_message(lot_id=lot_id, message_id=message_id, actor=request.user)
        except DomainError as exc:
            modeladmin.message_user(request, f"Message {message_id}: {exc.message}", messages.WARNING)


@admin.register(ChatMessage)
class ChatMessageAdmin(ReadOnlyAdmin):
    """Moderation: messages are shown as text (the admin escapes them) and hidden, never edited."""

    list_display = ("created_at", "lot", "user", "text", "is_seller", "hidden")
    list_filter = ("hidden", "is_seller")
    search_fields = ("text", "user__username", "lot__title")
    list_select_related = ("lot", "user")
    actions = [hide_messages]
