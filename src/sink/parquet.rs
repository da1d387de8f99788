//! Parquet shards of Records (Snappy-compressed, schema from `record::arrow_schema`),
//! written to a temporary name and renamed so a shard is either whole or absent.

use crate::record::{self, Record};
use anyhow::Context;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use std::path::Path;

pub fn write_parquet(path: &Path, rows: &[Record]) -> anyhow::Result<()> {
    write_batches(
        path,
        record::arrow_schema(),
        rows.chunks(4096).map(record::to_batch),
    )
}

/// Write `batches` as a Snappy-compressed Parquet file at `path`, via a temporary name so
/// the file is either whole or absent.
pub fn write_batches(
    path: &Path,
    schema: SchemaRef,
    batches: impl IntoIterator<Item = anyhow::Result<RecordBatch>>,
) -> anyhow::Result<()> {
    let tmp = path.with_extension("parquet.tmp");
    let file =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let mut w = ArrowWriter::try_new(file, schema, Some(props))?;
    for batch in batches {
        w.write(&batch?)?;
    }
    w.into_inner()?.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

/// Read a Parquet shard back into Records (for inspection and tests).
pub fn read_parquet(path: &Path) -> anyhow::Result<Vec<Record>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)?.build()?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch?;
        let mut buf = Vec::new();
        {
            let mut w = arrow::json::LineDelimitedWriter::new(&mut buf);
            w.write(&batch)?;
            w.finish()?;
        }
        for line in buf.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let mut v: serde_json::Value = serde_json::from_slice(line)?;
            // arrow-json omits null columns; put them back so Record deserializes.
            if let Some(obj) = v.as_object_mut() {
                for f in record::arrow_schema().fields() {
                    obj.entry(f.name().clone())
                        .or_insert(serde_json::Value::Null);
                }
            }
            out.push(serde_json::from_value(v)?);
        }
    }
    Ok(out)
}
