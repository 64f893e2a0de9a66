"""terndb quickstart: an embedded SQL database in a directory, no server.

Run:  python examples/quickstart.py [DATA_DIR]
"""
from __future__ import annotations

import shutil
import sys
import tempfile

import terndb


def main(path: str) -> None:
    con = terndb.connect(path)
    print(f"opened {path} (node id {con.node_id[:8]}...)")
    cur = con.cursor()
    cur.executescript("""
        CREATE TABLE IF NOT EXISTS customers(
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            country TEXT DEFAULT 'NZ'
        );
        CREATE TABLE IF NOT EXISTS orders(
            id INTEGER PRIMARY KEY,
            customer_id INTEGER NOT NULL,
            amount REAL CHECK (amount > 0)
        );
        CREATE INDEX IF NOT EXISTS orders_by_customer ON orders(customer_id);
    """)

    # Bulk insert in one transaction (DB-API implicit transaction, like sqlite3).
    cur.executemany("INSERT INTO customers(name, country) VALUES (?, ?)",
                    [("Ada", "UK"), ("Grace", "US"), ("Kiri", None)])
    cur.executemany("INSERT INTO orders(customer_id, amount) VALUES (?, ?)",
                    [(1 + i % 3, 10.0 + i) for i in range(30)])
    con.commit()

    # Query: join, aggregate, order.
    cur.execute("""
        SELECT c.name, count(*) AS orders, round(sum(o.amount), 2) AS total
        FROM customers c JOIN orders o ON o.customer_id = c.id
        GROUP BY c.name ORDER BY total DESC
    """)
    print([d[0] for d in cur.description])
    for row in cur:
        print(row)

    # Transactions: a failing statement rolls back alone; rollback() undoes the rest.
    cur.execute("UPDATE orders SET amount = amount * 2 WHERE customer_id = ?", (1,))
    try:
        cur.execute("INSERT INTO orders(customer_id, amount) VALUES (1, -5)")
    except terndb.IntegrityError as err:
        print("rejected:", err)
    con.rollback()
    cur.execute("SELECT max(amount) FROM orders")
    print("max amount after rollback:", cur.fetchone()[0])

    # Explicit transaction with a savepoint.
    cur.execute("BEGIN")
    cur.execute("INSERT INTO customers(name) VALUES ('Tane')")
    cur.execute("SAVEPOINT s1")
    cur.execute("DELETE FROM orders")
    cur.execute("ROLLBACK TO s1")
    cur.execute("COMMIT")
    cur.execute("SELECT count(*) FROM orders")
    print("orders kept:", cur.fetchone()[0])
    cur.execute("EXPLAIN QUERY PLAN SELECT * FROM orders WHERE customer_id = 2")
    print("plan:", [r[3] for r in cur.fetchall()])
    con.close()


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(sys.argv[1])
    else:
        tmp = tempfile.mkdtemp(prefix="terndb-quickstart-")
        try:
            main(tmp + "/data")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
