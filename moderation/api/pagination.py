from rest_framework.pagination import PageNumberPagination


class CappedPageNumberPagination(PageNumberPagination):
    """``?page_size=`` up to 100; a larger one is served as 100."""

    page_size = 20
    page_size_query_param = "page_size"
    max_page_size = 100
