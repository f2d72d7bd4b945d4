"""Records and the readers/writers that move them between files, lists and DataFrames."""

from forgekit.data.io import (
    RecordFormatError,
    read_records,
    records_to_dataframe,
    write_records,
)
from forgekit.data.records import RESERVED_FIELDS, make_lineage, make_record, record_id
from forgekit.data.sources import HubOfflineError, Source, source

__all__ = [
    "RESERVED_FIELDS",
    "HubOfflineError",
    "RecordFormatError",
    "Source",
    "make_lineage",
    "make_record",
    "read_records",
    "record_id",
    "records_to_dataframe",
    "source",
    "write_records",
]
