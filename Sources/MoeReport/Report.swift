import Foundation
import MoeStore

/// The selected tables, built from one read of the store.
public struct ReportSet: Sendable {
    public var tables: [ReportTable]
    public var data: ReportData
    public var regimes: GroupTable?
    public var experts: GroupTable?
    public var overfit: OverfitTable?
    public var claims: ClaimsTable?

    /// Number of rows of `table` (0 when it was not built).
    public func rowCount(_ table: ReportTable) -> Int {
        switch table {
        case .regimes: return regimes?.rows.count ?? 0
        case .experts: return experts?.rows.count ?? 0
        case .overfit: return overfit?.rows.count ?? 0
        case .claims: return claims?.rows.count ?? 0
        }
    }

    /// The same report restricted to one of its tables.
    public func only(_ table: ReportTable) -> ReportSet {
        var copy = self
        copy.tables = [table]
        return copy
    }
}

/// Entry points: build tables from a store, render them, write them to a directory.
public enum Reports {
    /// Reads the store once and builds the `tables` (in the given order).
    public static func build(store: Store, tables: [ReportTable], filter: WhereFilter?) throws -> ReportSet {
        try build(data: try ReportData.load(store: store, filter: filter), tables: tables)
    }

    public static func build(data: ReportData, tables: [ReportTable]) throws -> ReportSet {
        guard !tables.isEmpty else { throw ReportError.noTables }
        var set = ReportSet(tables: tables, data: data)
        for table in tables {
            switch table {
            case .regimes: set.regimes = try GroupTables.regimes(data)
            case .experts: set.experts = try GroupTables.experts(data)
            case .overfit: set.overfit = OverfitTable.build(data)
            case .claims: set.claims = try ClaimsTable.build(data)
            }
        }
        return set
    }

    public static func render(_ set: ReportSet, format: ReportFormat) -> String {
        switch format {
        case .md: return MarkdownRenderer.render(set)
        case .csv: return CSVRenderer.render(set)
        case .json: return JSONRenderer.render(set)
        case .html: return HTMLRenderer.render(set)
        }
    }

    /// Builds and renders in one call.
    public static func render(store: Store, tables: [ReportTable], format: ReportFormat, filter: WhereFilter?) throws -> String {
        render(try build(store: store, tables: tables, filter: filter), format: format)
    }

    /// Writes `<table>.md`, `<table>.csv` and `<table>.json` for every table of the set and
    /// one `report.html` page holding all of them, creating `directory` if needed. Returns
    /// the paths written. Each file is written to a temporary name and renamed into place.
    @discardableResult
    /// A path that is not a directory, or that cannot be created or written, gives
    /// `ReportError.cannotWrite` naming it.
    public static func write(_ set: ReportSet, to directory: String) throws -> [String] {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), !isDirectory.boolValue {
            throw ReportError.cannotWrite(path: directory, reason: "it exists and is not a directory")
        }
        try writing(directory) {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        }
        var written: [String] = []
        func put(_ text: String, _ name: String) throws {
            let path = (directory as NSString).appendingPathComponent(name)
            try writing(path) { try text.write(toFile: path, atomically: true, encoding: .utf8) }
            written.append(path)
        }
        for table in set.tables {
            let single = set.only(table)
            for format in [ReportFormat.md, .csv, .json] {
                try put(render(single, format: format), "\(table.rawValue).\(format.fileExtension)")
            }
        }
        try put(render(set, format: .html), "report.html")
        return written
    }

    /// Runs a file-system call, turning Foundation's error into one that names `path` and
    /// says why in the system's words (permission denied, read-only file system, …).
    private static func writing(_ path: String, _ body: () throws -> Void) throws {
        do { try body() } catch let error as CocoaError {
            let reason: String
            switch error.code {
            case .fileNoSuchFile, .fileWriteInvalidFileName: reason = "no such directory"
            case .fileWriteNoPermission: reason = "permission denied"
            case .fileWriteVolumeReadOnly: reason = "read-only file system"
            case .fileWriteOutOfSpace: reason = "no space left on the device"
            default: reason = error.localizedDescription
            }
            throw ReportError.cannotWrite(path: path, reason: reason)
        }
    }
}
