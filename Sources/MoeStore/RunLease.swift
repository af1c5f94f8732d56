import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Proof that this process is training a run: an exclusive `flock` on
/// `<store dir>/locks/<hash>.lock`, held from `Store.markRunning` until the run is marked
/// completed, failed or interrupted, `release()` is called, or the process dies.
///
/// Why a lock file and not a pid check: the kernel drops a flock when its holder dies, even
/// by SIGKILL, and a pid can be reused by an unrelated process. A store that finds a row
/// `running` whose lock it can take knows the trainer is gone and marks the run
/// `interrupted`. (flock over NFS is unreliable: keep a store on a local filesystem.)
///
/// Lock files are never deleted: unlinking a lock file while another process has it open
/// would let two processes lock two different files of the same name.
public final class RunLease: @unchecked Sendable {
    public let hash: String
    public let lockPath: String
    private var fd: Int32
    private let mutex = NSLock()

    init(hash: String, lockPath: String, fd: Int32) {
        self.hash = hash
        self.lockPath = lockPath
        self.fd = fd
    }

    deinit { release() }

    /// Whether this object still holds the lock.
    public var isHeld: Bool {
        mutex.lock()
        defer { mutex.unlock() }
        return fd >= 0
    }

    /// Drops the lock (closing the descriptor releases the flock). Idempotent.
    public func release() {
        mutex.lock()
        defer { mutex.unlock() }
        if fd >= 0 {
            close(fd)
            fd = -1
        }
    }
}

/// The flock primitives behind `RunLease` and interruption detection.
enum LockFile {
    /// Opens (creating if needed) the lock file; close-on-exec so that a child process does
    /// not inherit the lock and keep a dead trainer's run looking alive.
    static func openFile(_ path: String) throws -> Int32 {
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        if fd < 0 {
            let code = errno
            if code == EROFS || code == EACCES || code == EPERM { throw StoreError.readOnly(path: path) }
            if code == ENOSPC || code == EDQUOT { throw StoreError.diskFull(path: path) }
            throw StoreError.lockFailed(path: path, reason: String(cString: strerror(code)))
        }
        return fd
    }

    /// Tries once to take an exclusive lock without waiting. True when taken, false when
    /// another open file description holds it.
    static func tryLock(_ fd: Int32, path: String) throws -> Bool {
        while true {
            if flock(fd, LOCK_EX | LOCK_NB) == 0 { return true }
            let code = errno
            if code == EINTR { continue }
            if code == EWOULDBLOCK || code == EAGAIN { return false }
            throw StoreError.lockFailed(path: path, reason: String(cString: strerror(code)))
        }
    }

    /// Whether anyone holds the lock at `path` right now. Probing takes the lock for an
    /// instant, so callers that want it (`markRunning`) retry briefly.
    /// For a reader, which creates nothing: true when no process holds the lock (or the
    /// lock file does not exist), false when one does or it cannot be told.
    static func isFree(_ path: String) -> Bool {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return errno == ENOENT }
        defer { close(fd) }
        while flock(fd, LOCK_SH | LOCK_NB) != 0 {
            if errno != EINTR { return false }
        }
        return true
    }

    static func isHeld(_ path: String) throws -> Bool {
        let fd = try openFile(path)
        defer { close(fd) }
        return try !tryLock(fd, path: path)
    }
}
