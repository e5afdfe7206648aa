from django.urls import path

from shop import views

urlpatterns = [
    path("async/", views.my_async_view),
    path("payment/", views.process_payment),
    path("context/", views.my_view),
    path("products/<int:pk>/", views.product),
    path("health/", views.health),
    path("health/deep/", views.health),
    path("api/health/", views.health),
    path("admin/login/", views.admin_page),
    path("boom/", views.boom),
    path("login-as/<str:username>/", views.login_as),
    path("signals/", views.signals_seen),
]
