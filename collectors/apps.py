from django.apps import AppConfig


class CollectorsConfig(AppConfig):
    name = "collectors"
    verbose_name = "Collectors"

    def ready(self) -> None:
        from collectors import schedule

        schedule.connect()
