"""A Celery worker watched by Driftlock: the app, ``driftlock.celery.setup``, and tasks that succeed,
fail and retry. The broker and result backend come from CELERY_BROKER_URL (a real Redis server)."""

import os

from celery import Celery

import driftlock.celery

app = Celery("jobs", broker=os.environ["CELERY_BROKER_URL"], backend=os.environ["CELERY_BROKER_URL"])
app.conf.update(
    worker_max_tasks_per_child=int(os.environ.get("MAX_TASKS_PER_CHILD", "0")) or None,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
    task_default_retry_delay=0,
)

import tasks  # noqa: E402,F401  the page's tasks.py and the test tasks

driftlock.celery.setup(app)
