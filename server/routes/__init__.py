"""One APIRouter per resource: health, scenes, jobs."""
