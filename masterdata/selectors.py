"""Non-trivial reads: categories, ranked skill search, stats."""

from django.db import connections
from django.db.models import Case, Count, F, FloatField, Q, QuerySet, TextField, Value, When
from django.db.models.functions import Cast

from agentmesh.core.permissions import permitted_queryset

from .models import Constraint, ModelConfig, Prompt, Secret, Skill

MAX_SEARCH_TERMS = 8


def category_counts(queryset: QuerySet) -> list[dict]:
    """Distinct non-empty categories of `queryset` with how many rows each has."""
    return list(
        queryset.exclude(category="")
        .order_by()
        .values("category")
        .annotate(count=Count("pk"))
        .order_by("category")
        .values("category", "count")
    )


def filter_by_tags(queryset: QuerySet, tags: list[str]) -> QuerySet:
    """Rows carrying every tag. Portable: tags are stored normalised (no quotes), so the
    quoted tag occurs in the JSON text exactly when it is an element of the list."""
    for tag in tags:
        queryset = queryset.filter(tags__icontains=f'"{tag}"')
    return queryset


def _sqlite_rank(queryset: QuerySet, query: str) -> QuerySet:
    # Fallback scoring: name match > tag match > description match, summed over the terms.
    terms = query.split()[:MAX_SEARCH_TERMS]
    score = Case(When(name__iexact=query, then=Value(5.0)), default=Value(0.0), output_field=FloatField())
    for term in terms:
        for field, weight in (("name", 3.0), ("tags", 2.0), ("description", 1.0)):
            score = score + Case(
                When(**{f"{field}__icontains": term}, then=Value(weight)),
                default=Value(0.0),
                output_field=FloatField(),
            )
    return queryset.annotate(rank=score).filter(rank__gt=0)


def _postgres_rank(queryset: QuerySet, query: str) -> QuerySet:
    from django.contrib.postgres.search import SearchQuery, SearchRank, SearchVector

    vector = (
        SearchVector("name", weight="A", config="english")
        + SearchVector(Cast("tags", output_field=TextField()), weight="B", config="english")
        + SearchVector("description", weight="C", config="english")
    )
    search_query = SearchQuery(query, search_type="websearch", config="english")
    # Substring matches on the name also count, so a partial word ("summ") finds "Summarize".
    name_bonus = Case(
        When(name__icontains=query, then=Value(1.0)), default=Value(0.0), output_field=FloatField()
    )
    return queryset.annotate(search_vector=vector, rank=SearchRank(vector, search_query) + name_bonus).filter(
        Q(search_vector=search_query)
        | Q(name__icontains=query)
        | Q(tags__icontains=query)
        | Q(description__icontains=query)
    )


def skill_search(queryset: QuerySet, query: str) -> QuerySet:
    """Skills of `queryset` matching `query`, best first (annotated with `rank`)."""
    if connections[queryset.db].vendor == "postgresql":
        ranked = _postgres_rank(queryset, query)
    else:
        ranked = _sqlite_rank(queryset, query)
    return ranked.order_by(F("rank").desc(), "name", "pk")


def _counts(queryset: QuerySet, field: str) -> dict[str, int]:
    rows = queryset.order_by().values(field).annotate(count=Count("pk")).values_list(field, "count")
    return {key or "": count for key, count in sorted(rows)}


def _totals(queryset: QuerySet) -> dict[str, int]:
    return queryset.aggregate(total=Count("pk"), active=Count("pk", filter=Q(is_active=True)))


def masterdata_stats(*, user) -> dict:
    """Counts of what `user` may see, per type/category/provider."""
    skills = permitted_queryset(user, Skill.objects.all())
    constraints = permitted_queryset(user, Constraint.objects.all())
    prompts = permitted_queryset(user, Prompt.objects.all())
    models = permitted_queryset(user, ModelConfig.objects.all())
    secrets = permitted_queryset(user, Secret.objects.all())
    return {
        "skills": {
            **_totals(skills),
            "by_category": _counts(skills, "category"),
            "by_type": _counts(skills, "type"),
        },
        "constraints": {**_totals(constraints), "by_type": _counts(constraints, "type")},
        "prompts": {**_totals(prompts), "by_category": _counts(prompts, "category")},
        "models": {**_totals(models), "by_provider": _counts(models, "provider")},
        "secrets": {"total": secrets.count()},
    }
