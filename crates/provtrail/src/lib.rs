//! provtrail: the application.
