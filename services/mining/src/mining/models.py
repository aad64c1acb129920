"""Mining tables (schema ``mining``)."""

from sqlalchemy.orm import DeclarativeBase

from bai_platform.consumer import inbox_table
from bai_platform.db import make_metadata
from bai_platform.outbox import outbox_table


class Base(DeclarativeBase):
    metadata = make_metadata("mining")


outbox = outbox_table(Base.metadata)
inbox = inbox_table(Base.metadata)
