import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Opening the user's files for reading. Only regular files are read: a FIFO would block
/// `open` (and every read) until some other process wrote to it, and a device never ends.
public enum RegularFile {
    /// A handle on the regular file at `path`. The file is opened without blocking and
    /// checked with `fstat` on the same descriptor, so nothing can swap it in between.
    public static func openForReading(_ path: String) throws -> FileHandle {
        let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else {
            let code = errno
            throw DataError.unreadable(path: path, reason: code == ENOENT ? "no such file" : String(cString: strerror(code)))
        }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw DataError.unreadable(path: path, reason: reason)
        }
        let kind = info.st_mode & S_IFMT
        guard kind == S_IFREG else {
            close(fd)
            throw DataError.unreadable(path: path, reason: kind == S_IFDIR ? "is a directory" : "\(describe(kind)), not a regular file")
        }
        return FileHandle(fileDescriptor: fd, closeOnDealloc: true)
    }

    /// The whole regular file at `path`; more than `limit` bytes is refused, naming it.
    public static func read(_ path: String, limit: Int) throws -> Data {
        let handle = try openForReading(path)
        defer { try? handle.close() }
        do {
            let data = try handle.read(upToCount: limit + 1) ?? Data()
            guard data.count <= limit else {
                let size = limit % (1 << 20) == 0 ? "\(limit >> 20) MiB" : "\(limit) bytes"
                throw DataError.unreadable(path: path, reason: "larger than \(size)")
            }
            return data
        } catch let error as DataError {
            throw error
        } catch {
            throw DataError.unreadable(path: path, reason: error.localizedDescription)
        }
    }

    static func describe(_ kind: mode_t) -> String {
        switch kind {
        case S_IFDIR: return "is a directory"
        case S_IFIFO: return "is a FIFO (named pipe)"
        case S_IFSOCK: return "is a socket"
        case S_IFCHR: return "is a character device"
        case S_IFBLK: return "is a block device"
        default: return "is a special file"
        }
    }
}
