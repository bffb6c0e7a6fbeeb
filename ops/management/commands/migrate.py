from django.core.management.base import CommandError
from django.core.management.commands import migrate

from ops.database import database_problem


class Command(migrate.Command):
    """Django's `migrate`, after one plain connection has shown the database answers (see `ops.database`)."""

    def handle(self, *args, **options):
        problem = database_problem(options["database"])
        if problem:
            raise CommandError(problem)
        return super().handle(*args, **options)
