"""Run a double on its own, for poking at it with kubectl by hand.

    python -m tests.kube_double --kubeconfig /tmp/kubeconfig [--port 8001]

It serves until interrupted.  Tests should use ``KubeApiDouble`` directly.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from .server import KubeApiDouble


async def _serve(port: int, kubeconfig: str | None, bookmark_interval: float | None) -> None:
    async with KubeApiDouble(port=port, bookmark_interval=bookmark_interval, auto_finalize_interval=0.5) as api:
        if kubeconfig:
            api.write_kubeconfig(kubeconfig)
        print(f"kube double serving on {api.url}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--kubeconfig", help="write a kubeconfig for the double here")
    parser.add_argument("--bookmark-interval", type=float, default=None)
    args = parser.parse_args()
    asyncio.run(_serve(args.port, args.kubeconfig, args.bookmark_interval))


if __name__ == "__main__":
    main()
