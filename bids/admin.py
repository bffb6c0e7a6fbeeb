from django.contrib import admin

from bids.models import Bid, LotEvent


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
    list_display = ("id", "lot", "bidder", "amount", "max_amount", "is_proxy", "raises_max_only", "is_buy_now",
                    "created_at")
    list_filter = ("is_proxy", "is_buy_now")
    search_fields = ("lot__title", "bidder__username")
    list_select_related = ("lot", "bidder")


@admin.register(LotEvent)
class LotEventAdmin(ReadOnlyAdmin):
    list_display = ("lot", "seq", "type", "created_at")
    list_filter = ("type",)
    list_select_related = ("lot",)
