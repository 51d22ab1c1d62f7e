import django_filters

from masterdata.filters import TagsFilterSet

from .models import Template, TemplateKind


class TemplateFilter(TagsFilterSet):
    kind = django_filters.ChoiceFilter(choices=TemplateKind.choices)
    category = django_filters.CharFilter(lookup_expr="iexact")
    tag = django_filters.CharFilter(method="filter_tags", help_text="One tag (or comma-separated: all).")
    published = django_filters.BooleanFilter()
    archived = django_filters.BooleanFilter()

    class Meta:
        model = Template
        fields = ["kind", "category", "tag", "tags", "published", "archived", "owner"]
