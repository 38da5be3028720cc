"""Project scaffolding: ``kiln init`` writes a config, a CI workflow, tests and a deploy manifest."""

from kiln.project.init import init_project, project_files
from kiln.project.templates import TEMPLATES

__all__ = ["TEMPLATES", "init_project", "project_files"]
