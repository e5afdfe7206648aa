"""The shop's pages. Data lives in memory and in the visitor's signed session cookie: no database."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.middleware.csrf import get_token
from django.views.decorators.csrf import csrf_protect

from driftlock.demo.shop.catalog import PASSWORDS, PER_PAGE, PRODUCTS

_LOGIN_FORM = (
    '<form method="post" action="/login/"><input type="hidden" name="csrfmiddlewaretoken" value="{token}">'
    '<input name="username"><input name="password" type="password"><button>Log in</button></form>'
)

_TEXTS = {pk: f"{p['name']} {p['description']}".lower() for pk, p in PRODUCTS.items()}


def home(request: HttpRequest) -> HttpResponse:
    return HttpResponse("<h1>Driftlock demo shop</h1>")


def _page(request: HttpRequest) -> int:
    try:
        return max(1, int(request.GET.get("page", "1") or 1))
    except ValueError:
        return 1


def product_list(request: HttpRequest) -> JsonResponse:
    page = _page(request)
    items = list(PRODUCTS.values())
    if request.GET.get("sort") == "price":
        items.sort(key=lambda p: (p["price"], p["id"]))
    return JsonResponse({"products": items[(page - 1) * PER_PAGE : page * PER_PAGE], "page": page})


def product(request: HttpRequest, pk: int) -> JsonResponse:
    if pk not in PRODUCTS:
        return JsonResponse({"error": "no such product"}, status=404)
    return JsonResponse(PRODUCTS[pk])


def search(request: HttpRequest) -> JsonResponse:
    words = request.GET.get("q", "").lower().split()
    found = [PRODUCTS[pk] for pk, text in _TEXTS.items() if words and all(w in text for w in words)]
    page = _page(request)
    return JsonResponse({"results": found[(page - 1) * PER_PAGE : page * PER_PAGE], "page": page, "total": len(found)})


def cart(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"items": request.session.get("cart", []) if hasattr(request, "session") else []})


def cart_add(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return HttpResponse(status=405)
    if hasattr(request, "session"):
        request.session["cart"] = [*request.session.get("cart", []), request.POST.get("product", "")][-20:]
    return HttpResponseRedirect("/cart/")


@csrf_protect
def login(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        return HttpResponse(_LOGIN_FORM.format(token=get_token(request)))
    if request.method != "POST":
        return HttpResponse(status=405)
    user = request.POST.get("username", "")
    if PASSWORDS.get(user) == request.POST.get("password"):
        if hasattr(request, "session"):
            request.session["user"] = user
        return HttpResponseRedirect("/")
    return JsonResponse({"error": "invalid credentials"}, status=401)


@csrf_protect
def logout(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return HttpResponse(status=405)
    if hasattr(request, "session"):
        request.session.flush()
    return HttpResponseRedirect("/")


def checkout(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"total": 0})


def health(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


def export(request: HttpRequest) -> JsonResponse:
    """An endpoint that exists but that no shopper uses: its sudden use is the "new endpoint" episode."""
    return JsonResponse({"rows": len(PRODUCTS)})
