//! HAP status codes carried in JSON bodies (protocol notes §1.10).

use std::fmt;

/// A HAP status code as sent in `"status"` fields (0 = success, negative = error).
///
/// An open newtype so codes we do not know round-trip unchanged.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct HapStatus(pub i32);

impl HapStatus {
    /// 0: success.
    pub const SUCCESS: Self = Self(0);
    /// -70401: insufficient privileges (request denied).
    pub const INSUFFICIENT_PRIVILEGES: Self = Self(-70401);
    /// -70402: unable to communicate with the service / perform the operation.
    pub const SERVICE_COMMUNICATION_FAILURE: Self = Self(-70402);
    /// -70403: resource busy, try again.
    pub const RESOURCE_BUSY: Self = Self(-70403);
    /// -70404: cannot write to a read-only characteristic.
    pub const READ_ONLY_CHARACTERISTIC: Self = Self(-70404);
    /// -70405: cannot read from a write-only characteristic.
    pub const WRITE_ONLY_CHARACTERISTIC: Self = Self(-70405);
    /// -70406: notification not supported.
    pub const NOTIFICATION_NOT_SUPPORTED: Self = Self(-70406);
    /// -70407: out of resources.
    pub const OUT_OF_RESOURCE: Self = Self(-70407);
    /// -70408: operation timed out.
    pub const OPERATION_TIMED_OUT: Self = Self(-70408);
    /// -70409: resource does not exist.
    pub const RESOURCE_DOES_NOT_EXIST: Self = Self(-70409);
    /// -70410: invalid value in request (also timed-write violations).
    pub const INVALID_VALUE_IN_REQUEST: Self = Self(-70410);
    /// -70411: insufficient authorization.
    pub const INSUFFICIENT_AUTHORIZATION: Self = Self(-70411);
    /// -70412: not allowed in current state.
    pub const NOT_ALLOWED_IN_CURRENT_STATE: Self = Self(-70412);

    /// The code as sent on the wire.
    pub fn code(self) -> i32 {
        self.0
    }

    /// Whether this is [`HapStatus::SUCCESS`].
    pub fn is_success(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Debug for HapStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match *self {
            Self::SUCCESS => "Success",
            Self::INSUFFICIENT_PRIVILEGES => "InsufficientPrivileges",
            Self::SERVICE_COMMUNICATION_FAILURE => "ServiceCommunicationFailure",
            Self::RESOURCE_BUSY => "ResourceBusy",
            Self::READ_ONLY_CHARACTERISTIC => "ReadOnlyCharacteristic",
            Self::WRITE_ONLY_CHARACTERISTIC => "WriteOnlyCharacteristic",
            Self::NOTIFICATION_NOT_SUPPORTED => "NotificationNotSupported",
            Self::OUT_OF_RESOURCE => "OutOfResource",
            Self::OPERATION_TIMED_OUT => "OperationTimedOut",
            Self::RESOURCE_DOES_NOT_EXIST => "ResourceDoesNotExist",
            Self::INVALID_VALUE_IN_REQUEST => "InvalidValueInRequest",
            Self::INSUFFICIENT_AUTHORIZATION => "InsufficientAuthorization",
            Self::NOT_ALLOWED_IN_CURRENT_STATE => "NotAllowedInCurrentState",
            _ => return write!(f, "HapStatus({})", self.0),
        };
        write!(f, "{name}({})", self.0)
    }
}

impl fmt::Display for HapStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl std::error::Error for HapStatus {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_codes_round_trip_and_print() {
        let s = HapStatus(-12345);
        assert_eq!(s.code(), -12345);
        assert_eq!(format!("{s:?}"), "HapStatus(-12345)");
        assert_eq!(
            format!("{:?}", HapStatus::INVALID_VALUE_IN_REQUEST),
            "InvalidValueInRequest(-70410)"
        );
        assert!(HapStatus::SUCCESS.is_success());
        assert!(!HapStatus::RESOURCE_BUSY.is_success());
    }
}
