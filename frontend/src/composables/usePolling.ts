import { onBeforeUnmount, onMounted } from "vue";

/**
 * Call ``tick`` now and then every ``intervalMs`` after the previous call settled.
 *
 * Waiting for the previous call means a slow API is never asked twice at once; a
 * hidden tab is not refreshed until it is shown again.
 */
export function usePolling(tick: () => Promise<unknown>, intervalMs: number): { refresh: () => Promise<void> } {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let isStopped = false;

  async function run(): Promise<void> {
    clearTimeout(timer);
    try {
      await tick();
    } finally {
      if (!isStopped) timer = setTimeout(whenVisible, intervalMs);
    }
  }

  function whenVisible(): void {
    if (document.visibilityState === "hidden") {
      document.addEventListener("visibilitychange", run, { once: true });
    } else {
      void run();
    }
  }

  onMounted(() => void run());
  onBeforeUnmount(() => {
    isStopped = true;
    clearTimeout(timer);
    document.removeEventListener("visibilitychange", run);
  });
  return { refresh: run };
}
