"""Step 2: one email as bytes and as parts: parsing, charsets, quotes, bounces, attachments."""
