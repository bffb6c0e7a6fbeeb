from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.template.response import TemplateResponse

from bids import services
from bids.models import Bid, ChatMessage
from lots.admin import LotAdmin, ReadOnlyAdmin, RegistrationAdmin
from lots.models import Lot, Registration
from ops.exceptions import DomainError


@admin.action(description="Void the selected bids' bidders' bids on those lots")
def void_bidders_bids(modeladmin, request, queryset):
    """Each selected bid's bidder loses every bid on its lot, through `void_bids` as a registration's void:
    the lot's other bids replayed, its price and leader recomputed, events sent after commit. Asks first."""
    targets = {(row.lot_id, row.bidder_id): row for row in queryset.select_related("lot", "bidder")}
    if request.POST.get("post") != "yes":
        return TemplateResponse(
            request,
            "admin/bids/bid/void_bids_confirmation.html",
            {
                **modeladmin.admin_site.each_context(request),
                "title": "Void bids?",
                "opts": modeladmin.model._meta,
                "targets": sorted(targets.values(), key=lambda row: (row.lot_id, row.bidder.username)),
                "selected": list(queryset.values_list("pk", flat=True)),
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            },
        )
    for (lot_id, bidder_id), row in sorted(targets.items()):
        target = f"{row.bidder.username} on {row.lot.title}"
        try:
            voided = services.void_bids(lot_id=lot_id, bidder_id=bidder_id, actor=request.user)
        except DomainError as exc:
            modeladmin.message_user(request, f"{target}: {exc.message} ({exc.code})", messages.WARNING)
            continue
        if voided:
            modeladmin.message_user(request, f"Voided {voided} bid(s) of {target}.", messages.SUCCESS)
        else:
            modeladmin.message_user(request, f"{target}: no standing bids to void.", messages.INFO)


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
    actions = [void_bidders_bids]


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


class BidInline(admin.TabularInline):
    model = Bid
    fields = (
        "created_at",
        "bidder",
        "amount",
        "max_amount",
        "is_proxy",
        "raises_max_only",
        "is_buy_now",
        "void_reason",
    )
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ("-id",)
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def get_queryset(self, request):
        # Each row is labelled with its bid (amount, currency, bidder, lot): one query for them all.
        return super().get_queryset(request).select_related("lot", "bidder")


@admin.action(description="Void their bids on the sale's open lots")
def void_bids(modeladmin, request, queryset):
    for registration in queryset.select_related("user"):
        try:
            voided = services.void_participant_bids(registration_id=registration.pk, actor=request.user)
        except DomainError as exc:
            modeladmin.message_user(request, f"{registration.user}: {exc.message}", messages.WARNING)
            continue
        summary = ", ".join(f"lot {lot_id}: {count}" for lot_id, count in voided.items()) or "none standing"
        modeladmin.message_user(request, f"Voided the bids of {registration.user} ({summary}).", messages.SUCCESS)


# The lots app's pages, with what bidding adds: a lot shows its bids, a registration's bids can be voided.
class LotWithBidsAdmin(LotAdmin):
    inlines = [*LotAdmin.inlines, BidInline]


class RegistrationWithBidsAdmin(RegistrationAdmin):
    actions = [*RegistrationAdmin.actions, void_bids]


admin.site.unregister(Lot)
admin.site.register(Lot, LotWithBidsAdmin)
admin.site.unregister(Registration)
admin.site.register(Registration, RegistrationWithBidsAdmin)
