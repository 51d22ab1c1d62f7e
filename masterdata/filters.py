import django_filters

from agentmesh.core.filters import FilterSet

from .constraints import CONSTRAINT_TYPES
from .models import Constraint, ModelConfig, Prompt, Provider, Secret, Skill, SkillType
from .selectors import filter_by_tags


class OwnerFilterSet(FilterSet):
    owner = django_filters.CharFilter(field_name="owner__username", help_text="Owner's username.")


class TagsFilterSet(OwnerFilterSet):
    tags = django_filters.CharFilter(
        method="filter_tags", help_text="Comma-separated; rows carrying all of them."
    )

    def filter_tags(self, queryset, name, value):
        tags = [tag.strip().lower() for tag in value.split(",") if tag.strip()]
        return filter_by_tags(queryset, tags)


class SkillFilter(TagsFilterSet):
    category = django_filters.CharFilter(lookup_expr="iexact")
    type = django_filters.ChoiceFilter(choices=SkillType.choices)

    class Meta:
        model = Skill
        fields = ["category", "type", "is_active", "owner", "tags"]


class ConstraintFilter(OwnerFilterSet):
    type = django_filters.ChoiceFilter(choices=[(t.name, t.label) for t in CONSTRAINT_TYPES.values()])

    class Meta:
        model = Constraint
        fields = ["type", "is_active", "owner"]


class PromptFilter(TagsFilterSet):
    category = django_filters.CharFilter(lookup_expr="iexact")

    class Meta:
        model = Prompt
        fields = ["category", "is_active", "owner", "tags"]


class ModelConfigFilter(OwnerFilterSet):
    provider = django_filters.ChoiceFilter(choices=Provider.choices)

    class Meta:
        model = ModelConfig
        fields = ["provider", "model_name", "is_active", "owner"]


class SecretFilter(OwnerFilterSet):
    class Meta:
        model = Secret
        fields = ["owner"]
