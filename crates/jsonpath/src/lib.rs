//! JsonPath in the Jayway 2.10 dialect.
