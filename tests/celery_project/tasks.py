"""The integration page's Celery snippet, verbatim, and a few tasks to watch."""

# tasks.py
from celery import shared_task
from driftlock import DriftlockSyncClient

@shared_task
def detect_anomaly_task(event_data):
    client = DriftlockSyncClient(api_key='...')
    client.detect(stream_id='background-jobs', events=[event_data])


# -- tasks the tests run ----------------------------------------------------------------------


@shared_task
def add(x, y):
    return x + y


@shared_task
def fail():
    raise ValueError("this task always fails")


@shared_task(bind=True, max_retries=2)
def flaky(self):
    if self.request.retries < 2:
        raise self.retry(exc=ConnectionError("try again"), countdown=0)
    return "third time lucky"
