//! The protobuf wire format: a reader of `(field number, value)` pairs.

/// One field's value as it sits on the wire.
#[derive(Debug, Clone, Copy)]
pub(super) enum Wire<'a> {
    /// Wire type 0.
    Varint(u64),
    /// Wire type 1.
    Fixed64(u64),
    /// Wire type 2: strings, bytes, messages, packed repeated scalars.
    Len(&'a [u8]),
    /// Wire type 5 (no Kubernetes field has it; read to be skipped).
    Fixed32,
}

/// What went wrong reading the wire, before the caller adds the message name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WireError {
    /// The field (0 when its key itself was cut) runs past the end of the buffer.
    Truncated(u32),
    /// A varint longer than 10 bytes.
    VarintOverflow(u32),
    /// Wire types 3, 4 (groups), 6 and 7, which Kubernetes never writes.
    BadWireType(u32, u8),
    /// Field number 0.
    ZeroField,
}

/// Reads the fields of one message, in order.
pub(super) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Wire<'a> {
    /// The wire type number, for error messages.
    pub(super) fn wire_type(&self) -> u8 {
        match self {
            Wire::Varint(_) => 0,
            Wire::Fixed64(_) => 1,
            Wire::Len(_) => 2,
            Wire::Fixed32 => 5,
        }
    }
}

impl<'a> Reader<'a> {
    pub(super) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// The next field, or `None` at the end of the message.
    pub(super) fn next_field(&mut self) -> Result<Option<(u32, Wire<'a>)>, WireError> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint(0)?;
        let wire_type = (key & 7) as u8;
        let field = u32::try_from(key >> 3).unwrap_or(u32::MAX);
        if field == 0 {
            return Err(WireError::ZeroField);
        }
        let value = match wire_type {
            0 => Wire::Varint(self.varint(field)?),
            1 => Wire::Fixed64(u64::from_le_bytes(
                self.take(field, 8)?.try_into().unwrap_or([0; 8]),
            )),
            2 => {
                let len = self.varint(field)?;
                let len = usize::try_from(len).map_err(|_| WireError::Truncated(field))?;
                Wire::Len(self.take(field, len)?)
            }
            5 => {
                self.take(field, 4)?;
                Wire::Fixed32
            }
            other => return Err(WireError::BadWireType(field, other)),
        };
        Ok(Some((field, value)))
    }

    fn take(&mut self, field: u32, len: usize) -> Result<&'a [u8], WireError> {
        let end = self
            .pos
            .checked_add(len)
            .ok_or(WireError::Truncated(field))?;
        let bytes = self
            .buf
            .get(self.pos..end)
            .ok_or(WireError::Truncated(field))?;
        self.pos = end;
        Ok(bytes)
    }

    fn varint(&mut self, field: u32) -> Result<u64, WireError> {
        let mut value = 0u64;
        for i in 0..10 {
            let Some(&byte) = self.buf.get(self.pos) else {
                return Err(WireError::Truncated(field));
            };
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(WireError::VarintOverflow(field))
    }
}

/// Reads the varints of a packed repeated field.
pub(super) fn packed_varints(mut buf: &[u8], field: u32) -> Result<Vec<u64>, WireError> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let mut reader = Reader::new(buf);
        out.push(reader.varint(field)?);
        buf = &buf[reader.pos..];
    }
    Ok(out)
}

/// Reads the little-endian 64-bit values of a packed repeated field.
pub(super) fn packed_fixed64(buf: &[u8], field: u32) -> Result<Vec<u64>, WireError> {
    if !buf.len().is_multiple_of(8) {
        return Err(WireError::Truncated(field));
    }
    Ok(buf
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
        .collect())
}
