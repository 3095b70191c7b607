urlpatterns = []  # the web role only answers /healthz and /readyz (offload.health)
