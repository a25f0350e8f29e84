"""`python -m config.embedded_postgres start|stop|status` for the Makefile and CI."""

import argparse
import sys

from . import default_data_dir, ensure_running, postmaster_pid, stop


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m config.embedded_postgres")
    parser.add_argument("action", choices=["start", "stop", "status"])
    args = parser.parse_args(argv)
    data_dir = default_data_dir()
    if args.action == "start":
        params = ensure_running(data_dir)
        print(f"embedded PostgreSQL running (data {data_dir}, socket {params['host']})")
    elif args.action == "stop":
        print("embedded PostgreSQL stopped" if stop(data_dir) else "embedded PostgreSQL was not running")
    else:
        pid = postmaster_pid(data_dir)
        print(f"running, pid {pid}, data {data_dir}" if pid else f"not running (data {data_dir})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
