from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminPasswordChangeForm

from accounts import services
from accounts.models import User


class PasswordChangeForm(AdminPasswordChangeForm):
    """Django's form, saving through the service: the user's sessions and open sockets end."""

    def save(self, commit: bool = True):
        if not commit:
            return super().save(commit=False)
        usable = self.cleaned_data.get("set_usable_password", True)
        return services.change_password(user=self.user, new_password=self.cleaned_data["password1"] if usable else None)


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    fieldsets = (
        *DjangoUserAdmin.fieldsets,
        ("Notifications", {"fields": ("email_notifications",)}),
    )
    list_display = ("username", "email", "first_name", "last_name", "is_staff", "is_active")
    change_password_form = PasswordChangeForm

    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        if change and "is_active" in form.changed_data and not obj.is_active:
            # Saved by the form above, in the admin's transaction: the sockets close after it commits.
            services.deactivate_user(user_id=obj.pk)

    def delete_model(self, request, obj) -> None:
        services.end_sessions(user_ids=[obj.pk])
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset) -> None:
        services.end_sessions(user_ids=list(queryset.values_list("pk", flat=True)))
        super().delete_queryset(request, queryset)
