/// The product version: the API level of the pgclone SQL API this project implements.
public enum PgcloneVersion {
    public static let number = "3.6.0"
    /// What `pgclone --version` and `SELECT pgclone.version()` print.
    public static let display = "pgclone \(number)"
}
