"""The shop's pages. Data lives in memory: the demo needs no database."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse

PRODUCTS = {pk: {"id": pk, "name": f"Product {pk}", "price": 5 + pk % 17} for pk in range(1, 41)}
PASSWORDS = {user: user + "-secret" for user in ("ana", "ben", "chloe", "dev", "eli", "fay")}


def home(request: HttpRequest) -> HttpResponse:
    return HttpResponse("<h1>Driftlock demo shop</h1>")


def product_list(request: HttpRequest) -> JsonResponse:
    page = int(request.GET.get("page", "1") or 1)
    items = list(PRODUCTS.values())[(page - 1) * 20 : page * 20]
    return JsonResponse({"products": items, "page": page})


def product(request: HttpRequest, pk: int) -> JsonResponse:
    if pk not in PRODUCTS:
        return JsonResponse({"error": "no such product"}, status=404)
    return JsonResponse(PRODUCTS[pk])


def search(request: HttpRequest) -> JsonResponse:
    q = request.GET.get("q", "").lower()
    return JsonResponse({"results": [p for p in PRODUCTS.values() if q and q in str(p["name"]).lower()]})


def cart(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"items": []})


def cart_add(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return HttpResponse(status=405)
    return HttpResponseRedirect("/cart/")


def login(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return HttpResponse(status=405)
    user = request.POST.get("username", "")
    if PASSWORDS.get(user) == request.POST.get("password"):
        return HttpResponseRedirect("/")
    return JsonResponse({"error": "invalid credentials"}, status=401)


def checkout(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"total": 0})


def health(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


def export(request: HttpRequest) -> JsonResponse:
    """An endpoint that exists but that no shopper uses: its sudden use is the "new endpoint" episode."""
    return JsonResponse({"rows": len(PRODUCTS)})
