-- Customers of the example shop. Portable SQL: PostgreSQL, MySQL/MariaDB and SQLite.
CREATE TABLE customers (
    id INTEGER PRIMARY KEY,
    name VARCHAR(200) NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
);
