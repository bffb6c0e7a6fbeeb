"""Deactivating a user or setting their password in the admin ends their sessions: their open sockets close."""

from unittest import mock

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from accounts import services

pytestmark = pytest.mark.django_db

User = get_user_model()


def change_form_data(user, **changes) -> dict:
    joined = user.date_joined
    data = {
        "username": user.username,
        "email": user.email,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "is_active": "on",
        "email_notifications": "on",
        "date_joined_0": joined.strftime("%Y-%m-%d"),
        "date_joined_1": joined.strftime("%H:%M:%S"),
    }
    data.update(changes)
    return {name: value for name, value in data.items() if value is not None}


def test_deactivating_in_the_admin_ends_the_sessions(admin_client, bidder, django_capture_on_commit_callbacks):
    url = reverse("admin:accounts_user_change", args=[bidder.pk])
    with (
        mock.patch.object(services, "close_sockets") as close_sockets,
        django_capture_on_commit_callbacks(execute=True),
    ):
        response = admin_client.post(url, change_form_data(bidder, is_active=None))

    assert response.status_code == 302, response.content[:2000]
    fresh = User.objects.get(pk=bidder.pk)
    assert (fresh.is_active, fresh.session_epoch) == (False, bidder.session_epoch + 1)
    close_sockets.assert_called_once_with(user_ids=[bidder.pk])


def test_other_changes_in_the_admin_leave_the_sessions_alone(admin_client, bidder, django_capture_on_commit_callbacks):
    url = reverse("admin:accounts_user_change", args=[bidder.pk])
    with (
        mock.patch.object(services, "close_sockets") as close_sockets,
        django_capture_on_commit_callbacks(execute=True),
    ):
        response = admin_client.post(url, change_form_data(bidder, first_name="Alicia"))

    assert response.status_code == 302, response.content[:2000]
    assert User.objects.get(pk=bidder.pk).session_epoch == bidder.session_epoch
    close_sockets.assert_not_called()


def test_setting_a_password_in_the_admin_ends_the_sessions(admin_client, bidder, django_capture_on_commit_callbacks):
    url = reverse("admin:auth_user_password_change", args=[bidder.pk])
    new = "an-entirely-new-passphrase"
    with (
        mock.patch.object(services, "close_sockets") as close_sockets,
        django_capture_on_commit_callbacks(execute=True),
    ):
        response = admin_client.post(url, {"password1": new, "password2": new, "usable_password": "true"})

    assert response.status_code == 302, response.content[:2000]
    fresh = User.objects.get(pk=bidder.pk)
    assert fresh.check_password(new)
    assert fresh.session_epoch == bidder.session_epoch + 1
    close_sockets.assert_called_once_with(user_ids=[bidder.pk])


def test_deleting_in_the_admin_closes_the_sockets(admin_client, bidder, django_capture_on_commit_callbacks):
    url = reverse("admin:accounts_user_delete", args=[bidder.pk])
    with (
        mock.patch.object(services, "close_sockets") as close_sockets,
        django_capture_on_commit_callbacks(execute=True),
    ):
        response = admin_client.post(url, {"post": "yes"})

    assert response.status_code == 302, response.content[:2000]
    assert not User.objects.filter(pk=bidder.pk).exists()
    close_sockets.assert_called_once_with(user_ids=[bidder.pk])
