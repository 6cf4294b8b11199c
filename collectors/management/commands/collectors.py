"""`manage.py collectors status|start|stop|restart [NAME]`: see and control hosted collectors."""

import json

from celery.exceptions import TimeoutError as TaskTimeout
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from redis import RedisError

from collectors.hosting import control, reconcile

CONTROLS = {
    "start": control.start_collector,
    "stop": control.stop_collector,
    "restart": control.restart_collector,
}


class Command(BaseCommand):
    help = (
        "status: each collector's status dict (spec Collector Status) from its heartbeat. "
        "start NAME enables the pair and starts it; stop NAME disables it and stops it; "
        "restart NAME restarts it where it runs. reconcile: the health check, now. "
        "NAME is exchange:symbol, e.g. okx:BTC-USDT."
    )

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["status", "start", "stop", "restart", "reconcile"])
        parser.add_argument("name", nargs="?", help="exchange:symbol (all for status).")
        parser.add_argument(
            "--wait",
            type=float,
            default=30.0,
            help="Seconds to wait for a worker's answer (0: send and return).",
        )

    def handle(self, *args, action: str, name: str | None, wait: float, **options):
        try:
            if action == "status":
                self.status(name)
                return
            if action == "reconcile":
                self.stdout.write(reconcile.apply_configuration_now("Health check").message)
                return
            if not name:
                raise CommandError(f"{action} needs a NAME, e.g. okx:BTC-USDT")
            self.control(action, name, wait)
        except (RedisError, ImproperlyConfigured) as error:  # Celery hosting without Redis
            raise CommandError(f"cannot reach the collectors' Redis: {error}") from None
        except control.ControlError as error:
            raise CommandError(str(error)) from None

    def status(self, name: str | None) -> None:
        states = [s for s in reconcile.collector_states() if name is None or s.name == name]
        if name is not None and not states:
            raise CommandError(f"{name}: not configured and not running")
        for state in states:
            where = f"on {state.worker}" if state.worker else "on no worker"
            wanted = "should run" if state.should_be_running else "should not run"
            health_text = "healthy" if state.is_healthy else "; ".join(state.issues) or "unhealthy"
            self.stdout.write(f"{state.name}: {state.status} {where}, {wanted}, {health_text}")
            if state.collector_status:
                self.stdout.write(json.dumps(state.collector_status, indent=2))

    def control(self, action: str, name: str, wait: float) -> None:
        request = CONTROLS[action](name)
        self.stdout.write(f"{name}: {request.summary()}")
        if request.result is None or wait <= 0:
            return
        try:
            answer = request.result.get(timeout=wait)
        except TaskTimeout:
            raise CommandError(
                f"{name}: no answer within {wait:g}s; is a collector worker running "
                "(celery worker -Q collectors)?"
            ) from None
        except Exception as error:  # the task failed on the worker; its error says why
            raise CommandError(f"{name}: {action} failed: {error}") from None
        detail = f" ({answer['detail']})" if answer.get("detail") else ""
        self.stdout.write(f"{name}: {answer['outcome']} on {answer['worker']}{detail}")
