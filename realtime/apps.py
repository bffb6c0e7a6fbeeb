from django.apps import AppConfig


class RealtimeConfig(AppConfig):
    name = "realtime"
    verbose_name = "Real-time edge"

    def ready(self) -> None:
        from ops import broadcasting
        from realtime import fanout

        broadcasting.use(fanout)
