"""Login protection for Flower's basic auth: after LOGIN_MAX_FAILURES wrong passwords within
LOGIN_WINDOW_SECONDS a client gets 429 with Retry-After until the window ends (login_limit.py).

Flower has no rate limit and no plugin hook, but it reads a Python configuration file at start
(`airflow celery flower --flower-conf FILE`, which Flower executes with tornado.options): the
resource's file (flower_conf.py beside this module) calls install(), which wraps Flower's
BaseHandler.get_current_user, where Flower checks the Authorization header of every request. No
file of Flower is changed. Flower is one process, so the counters live in its memory. Only a request
that carried credentials counts: a browser's first request has none and gets 401 to make it ask.
"""

from __future__ import annotations

import logging

from airflow_resource.in_airflow import login_limit

log = logging.getLogger(__name__)
_INSTALLED = "_apache_airflow_resource_guarded"


def install() -> bool:
    """Wrap Flower's check of the credentials once; False when there is nothing to do."""
    import tornado.web
    from flower.views import BaseHandler

    limit = login_limit.from_env()
    if not limit.enabled or getattr(BaseHandler.get_current_user, _INSTALLED, False):
        return False
    window = login_limit.MemoryWindow(limit)
    checked = BaseHandler.get_current_user

    def get_current_user(self):  # noqa: ANN001, ANN202 - Flower's signature
        if not self.request.headers.get("Authorization"):
            return checked(self)  # no credentials: Flower's own 401 asks for them, nothing counted
        client = self.request.remote_ip or "unknown"
        taken, left = window.take(client)
        if login_limit.blocked(limit, taken):
            if login_limit.first_block(limit, taken):
                log.warning("apache-airflow resource: %s refused for %d s after %d failed logins",
                            client, left, limit.max_failures)
            self.set_status(login_limit.TOO_MANY)
            self.set_header("Retry-After", str(left))
            self.set_header("Content-Type", "text/plain; charset=utf-8")
            raise tornado.web.Finish(f"Too many failed logins from this address: try again in {left} s\n")
        try:
            user = checked(self)
        except tornado.web.HTTPError as exc:
            if exc.status_code != 401:
                window.give_back(client)
            else:
                log.warning("apache-airflow resource: failed Flower login from %s", client)
            raise
        window.give_back(client)
        return user

    setattr(get_current_user, _INSTALLED, True)
    BaseHandler.get_current_user = get_current_user
    return True
