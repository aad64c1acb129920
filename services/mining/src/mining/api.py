"""Mining HTTP routes (its domain arrives in its own issue; the road is built)."""

from fastapi import APIRouter

router = APIRouter(prefix="/v1/mining", tags=["mining"])
