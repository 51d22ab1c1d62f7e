"""django-waffle's tables without its Flag (swapped for system.FeatureFlag: WAFFLE_FLAG_MODEL).

waffle's own migrations create waffle_flag and its user/group tables even when the model is
swapped; their foreign key to the user table then stops PostgreSQL from truncating it
(`flush`, transactional tests). MIGRATION_MODULES points waffle here instead."""
