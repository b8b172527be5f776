import { ref, shallowRef, type Ref } from "vue";
import { describeError } from "../api/problem";

export interface Resource<T> {
  data: Ref<T | null>;
  error: Ref<string | null>;
  isLoading: Ref<boolean>;
  load: () => Promise<void>;
}

/**
 * Load something from the API with loading and error states.
 *
 * A reload keeps showing the last data while it runs; a failed reload keeps it too,
 * next to the error.
 */
export function useResource<T>(fetcher: () => Promise<T>): Resource<T> {
  const data = shallowRef<T | null>(null) as Ref<T | null>;
  const error = ref<string | null>(null);
  const isLoading = ref(false);
  async function load(): Promise<void> {
    isLoading.value = true;
    try {
      data.value = await fetcher();
      error.value = null;
    } catch (caught) {
      error.value = describeError(caught);
    } finally {
      isLoading.value = false;
    }
  }
  return { data, error, isLoading, load };
}
