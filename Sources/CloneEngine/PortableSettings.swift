/// Output settings every clone and verify session pins, as pg_dump does: values and deparsed
/// definitions then read the same on the other side whatever the source database, the target
/// database or the login sets for itself (ALTER DATABASE/ROLE ... SET). Without them a source
/// with `DateStyle = 'SQL, DMY'` turned 2020-01-05 into 2020-05-01 on a target reading MDY, in
/// COPY text and in defaults, CHECKs and partition bounds alike; `extra_float_digits = -3` cut
/// float8 to 12 digits; a LATIN1 source handed its bytes to a UTF8 target as if they were
/// UTF-8 (fidelity round 25).
enum PortableSettings {
    /// Text in UTF-8 on both sides (each server converts from and to its own encoding), except
    /// on a SQL_ASCII server, which converts nothing and whose bytes need not be UTF-8: there
    /// the session is SQL_ASCII too, so its bytes pass as they are (into another SQL_ASCII
    /// database byte for byte; into any other, read as UTF-8, or refused; round 26). ISO
    /// dates with numeric zone offsets, intervals PostgreSQL-style, floats that read back exactly.
    static let sql = """
        SELECT pg_catalog.set_config('client_encoding', CASE pg_catalog.current_setting('server_encoding') WHEN 'SQL_ASCII' THEN 'SQL_ASCII' ELSE 'UTF8' END, false); \
        SET DateStyle = ISO; SET IntervalStyle = postgres; SET extra_float_digits = 3; SET bytea_output = hex
        """
}
