from django.contrib.auth.models import AbstractUser
from django.db import models


class Role(models.TextChoices):
    ADMIN = "admin", "Admin"
    DEVELOPER = "developer", "Developer"
    USER = "user", "User"


class User(AbstractUser):
    email = models.EmailField("email address", unique=True)
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.USER, db_index=True)

    REQUIRED_FIELDS = ["email"]

    class Meta:
        ordering = ["username"]

    @property
    def is_platform_admin(self) -> bool:
        return self.is_superuser or self.role == Role.ADMIN

    def save(self, *args, **kwargs):
        super().save(*args, **kwargs)
        from .roles import sync_user_role_group

        sync_user_role_group(self)
