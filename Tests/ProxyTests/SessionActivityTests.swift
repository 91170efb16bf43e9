import PostgresWire
@testable import Proxy
import Testing

@Suite struct SessionActivityTests {
    private func id(_ c: Character) -> UInt8 { UInt8(ascii: c.unicodeScalars.first!) }

    @Test func simpleQueryCycle() {
        var activity = SessionActivity()
        #expect(activity.isIdle)
        activity.clientSent(id("Q"))
        #expect(!activity.isQuiet)
        activity.serverSentReadyForQuery(.idle)
        #expect(activity.isIdle)
    }

    @Test func pipelinedExtendedQueriesNeedEverySync() {
        var activity = SessionActivity()
        for type in "PBDES" + "BES" { activity.clientSent(id(type)) }
        activity.serverSentReadyForQuery(.idle)
        #expect(!activity.isQuiet)
        activity.serverSentReadyForQuery(.idle)
        #expect(activity.isIdle)
    }

    /// Extended messages left without a Sync, then a Query: the Query runs after them and its
    /// ReadyForQuery leaves the server between requests (round 18: a Close without Sync kept the
    /// session "in a batch" for good, so its masking was never read again).
    @Test func aQueryAfterUnsyncedExtendedMessagesEndsTheBatch() {
        var activity = SessionActivity()
        activity.clientSent(id("C"))
        #expect(!activity.isQuiet)
        activity.clientSent(id("Q"))
        activity.serverSentReadyForQuery(.idle)
        #expect(activity.isQuiet)
        // Not when extended messages follow the Query: they wait for a Sync still.
        activity.clientSent(id("P"))
        activity.clientSent(id("Q"))
        activity.clientSent(id("B"))
        activity.serverSentReadyForQuery(.idle)
        #expect(!activity.isQuiet)
        activity.clientSent(id("S"))
        activity.serverSentReadyForQuery(.idle)
        #expect(activity.isQuiet)
    }

    @Test func flushWithoutSyncIsBusy() {
        var activity = SessionActivity()
        activity.clientSent(id("P"))
        activity.clientSent(id("H"))
        #expect(!activity.isQuiet)
    }

    /// psycopg ends a batch with Sync and then sends Flush: the Flush starts nothing.
    @Test func flushAfterSyncStartsNoBatch() {
        var activity = SessionActivity()
        for type in "PBES" { activity.clientSent(id(type)) }
        activity.clientSent(id("H"))
        activity.serverSentReadyForQuery(.idle)
        #expect(activity.isQuiet)
        activity.clientSent(id("H"))
        #expect(activity.isQuiet)
    }

    @Test func openTransactionIsQuietButNotIdle() {
        var activity = SessionActivity()
        activity.clientSent(id("Q"))
        activity.serverSentReadyForQuery(.inTransaction)
        #expect(activity.isQuiet)
        #expect(!activity.isIdle)
    }

    @Test func firstReadyForQueryAfterAuthenticationDoesNotGoNegative() {
        var activity = SessionActivity()
        activity.serverSentReadyForQuery(.idle)
        activity.clientSent(id("Q"))
        #expect(!activity.isQuiet)
    }

    /// A COPY FROM STDIN started by an Execute: the server ignores the Sync sent behind the
    /// Execute (libpq, tokio-postgres) and those before the copy's end; only the Sync after
    /// CopyDone is answered (round 34: one answer too many was expected for good).
    @Test func syncsDuringAnExtendedCopyInAreNotAnswered() {
        var activity = SessionActivity()
        for type in "PBES" { activity.clientSent(id(type)) }
        activity.serverStartedCopyIn()
        #expect(activity.settledRequests == 1)
        activity.clientSent(id("S"))   // ignored by the server too
        for type in "dcS" { activity.clientSent(id(type)) }
        #expect(!activity.isQuiet)
        activity.serverSentReadyForQuery(.idle)
        #expect(activity.isIdle)
        #expect(activity.settledRequests == activity.sentRequests)
    }

    /// The same for a COPY started by a simple query, with Syncs among the data, sent before
    /// the server's CopyInResponse came or after (round 36).
    @Test func syncsDuringASimpleCopyInAreNotAnswered() {
        var early = SessionActivity()
        for type in "QdSdc" { early.clientSent(id(type)) }
        early.serverStartedCopyIn()
        early.serverSentReadyForQuery(.idle)
        #expect(early.isIdle)
        var late = SessionActivity()
        late.clientSent(id("Q"))
        late.serverStartedCopyIn()
        for type in "dSSc" { late.clientSent(id(type)) }
        late.serverSentReadyForQuery(.idle)
        #expect(late.isIdle)
        var plain = SessionActivity()
        plain.clientSent(id("Q"))
        plain.serverStartedCopyIn()
        for type in "dc" { plain.clientSent(id(type)) }
        plain.serverSentReadyForQuery(.idle)
        #expect(plain.isIdle)
        // A copy the server ended with an error, the client never sending CopyDone: later Syncs
        // count again.
        var failed = SessionActivity()
        failed.clientSent(id("Q"))
        failed.serverStartedCopyIn()
        failed.clientSent(id("d"))
        failed.serverSentReadyForQuery(.idle)
        for type in "PBES" { failed.clientSent(id(type)) }
        #expect(!failed.isQuiet)
        failed.serverSentReadyForQuery(.idle)
        #expect(failed.isIdle)
    }
}
