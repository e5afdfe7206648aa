from django.urls import path

from driftlock.demo.shop import views

urlpatterns = [
    path("", views.home),
    path("products/", views.product_list),
    path("products/<int:pk>/", views.product),
    path("search/", views.search),
    path("cart/", views.cart),
    path("cart/add/", views.cart_add),
    path("login/", views.login),
    path("logout/", views.logout),
    path("checkout/", views.checkout),
    path("health/", views.health),
    path("api/v2/export/", views.export),
]
