"""No views: the suite only needs the health middleware."""

urlpatterns = []
