"""The integration page's views, verbatim, plus a few plain pages of a shop."""

import asyncio
import threading

from django.conf import settings
from django.contrib.auth import login
from django.contrib.auth.models import User
from django.dispatch import receiver
from django.http import HttpResponse, JsonResponse

from driftlock import DriftlockClient
from driftlock.django.signals import anomaly_detected

# -- from the page: Async Support ---------------------------------------------------------------


async def my_async_view(request):
    # Driftlock middleware automatically captures this request
    await asyncio.sleep(0.1)
    return JsonResponse({'status': 'ok'})


# -- from the page: Manual Detection in Views ----------------------------------------------------

client = DriftlockClient(api_key=settings.DRIFTLOCK['API_KEY'])

def process_payment(request):
    amount = request.POST.get('amount')

    # Check for anomalies before processing
    result = client.detect_sync(
        stream_id='payments',
        events=[{'type': 'payment', 'body': {'amount': amount}}]
    )

    if result.anomalies:
        return JsonResponse({'error': 'Suspicious activity detected'}, status=403)

    # Process payment...
    return JsonResponse({'status': 'processed'})


# -- from the page: Customizing Events -----------------------------------------------------------


def my_view(request):
    request.driftlock_context = {
        'user_tier': request.user.profile.tier,
        'ip_address': request.META.get('REMOTE_ADDR')
    }
    # ...
    return JsonResponse({"ok": True})


# -- the rest of the shop ------------------------------------------------------------------------


def product(request, pk):
    return JsonResponse({"product": pk})


def health(request):
    return HttpResponse("ok")


def admin_page(request):
    return HttpResponse("admin")


def boom(request):
    raise RuntimeError("boom")


def login_as(request, username):
    from shop.models import Profile

    user, created = User.objects.get_or_create(username=username)
    if created:
        Profile.objects.create(user=user, tier="gold")
    login(request, user)
    return JsonResponse({"user": username})


_signals = []
_signals_lock = threading.Lock()


@receiver(anomaly_detected)
def remember_anomaly(sender, anomaly, span, **kwargs):
    with _signals_lock:
        _signals.append({"stream": span.stream_id, "route": span.route, "why": anomaly.why})


def signals_seen(request):
    with _signals_lock:
        return JsonResponse({"anomalies": list(_signals)})
