-- A data migration: the shop's first customers and orders.
INSERT INTO customers (id, name) VALUES (1, 'Ada Lovelace'), (2, 'Grace Hopper');
INSERT INTO orders (id, customer_id, total_cents) VALUES (1, 1, 4200), (2, 2, 1999), (3, 1, 500);
