import MoeStore

extension StoreError {
    /// Errors caused by what the user typed (exit 2) rather than by the store's state.
    var isInputError: Bool {
        switch self {
        case .invalidHash, .invalidHashPrefix, .ambiguousHashPrefix, .unknownRun, .invalidWhere, .invalidConfigKey,
             .notADatabase, .notFound, .notAStore, .cannotOpen:
            return true
        default:
            return false
        }
    }
}
