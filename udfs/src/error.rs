//! Errors of the SQL functions, typed so that the wire layer can give each its SQLSTATE.

use datafusion::error::DataFusionError;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FunctionError {
    /// A bad option or argument value (SQLSTATE 22023, invalid_parameter_value).
    #[error("{0}")]
    InvalidOption(String),
    /// A bad value in an input row (SQLSTATE 22000, data_exception).
    #[error("{0}")]
    InvalidRow(String),
    /// The input lacks a column the function needs (SQLSTATE 42703, undefined_column).
    #[error("{0}")]
    MissingColumn(String),
    /// Text that does not read as its type (SQLSTATE 22P02, invalid_text_representation).
    #[error("{0}")]
    InvalidText(String),
    /// A named object (a model) that does not exist (SQLSTATE 42704, undefined_object).
    #[error("{0}")]
    UndefinedObject(String),
    /// Storage failed underneath (SQLSTATE 58030, io_error).
    #[error("{0}")]
    Storage(String),
    /// A result larger than the server builds (SQLSTATE 54000, program_limit_exceeded).
    #[error("{0}")]
    TooLarge(String),
    /// Something this kind of object cannot do (SQLSTATE 0A000, feature_not_supported).
    #[error("{0}")]
    NotSupported(String),
}

impl FunctionError {
    pub fn sqlstate(&self) -> &'static str {
        match self {
            FunctionError::InvalidOption(_) => "22023",
            FunctionError::InvalidRow(_) => "22000",
            FunctionError::MissingColumn(_) => "42703",
            FunctionError::InvalidText(_) => "22P02",
            FunctionError::UndefinedObject(_) => "42704",
            FunctionError::Storage(_) => "58030",
            FunctionError::TooLarge(_) => "54000",
            FunctionError::NotSupported(_) => "0A000",
        }
    }
}

impl From<FunctionError> for DataFusionError {
    fn from(e: FunctionError) -> Self {
        DataFusionError::External(Box::new(e))
    }
}

/// A bad option or argument.
pub fn user_error(msg: impl Into<String>) -> DataFusionError {
    FunctionError::InvalidOption(msg.into()).into()
}

/// A bad input row.
pub fn row_error(msg: impl Into<String>) -> DataFusionError {
    FunctionError::InvalidRow(msg.into()).into()
}

/// A missing input column.
pub fn column_error(msg: impl Into<String>) -> DataFusionError {
    FunctionError::MissingColumn(msg.into()).into()
}
