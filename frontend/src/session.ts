// Who is signed in, shared by the whole app.
import { reactive, readonly } from "vue";
import { api } from "./api/client";
import type { Credentials, User } from "./api/types";

interface SessionState {
  user: User | null;
  isLoaded: boolean;
}

const state = reactive<SessionState>({ user: null, isLoaded: false });
let loading: Promise<User | null> | null = null;

export const session = readonly(state);

/** Ask the API who is signed in (once; later calls reuse the answer). */
export function loadSession(): Promise<User | null> {
  loading ??= api
    .me()
    .then((found) => {
      state.user = found?.user ?? null;
      return state.user;
    })
    .catch((error: unknown) => {
      loading = null; // the API was down: ask again on the next navigation
      throw error;
    })
    .finally(() => {
      state.isLoaded = true;
    });
  return loading;
}

export async function signIn(credentials: Credentials): Promise<User> {
  const found = await api.login(credentials);
  state.user = found.user;
  loading = Promise.resolve(found.user);
  return found.user;
}

export async function signUp(credentials: Credentials): Promise<User> {
  const found = await api.signup(credentials);
  state.user = found.user;
  loading = Promise.resolve(found.user);
  return found.user;
}

export async function signOut(): Promise<void> {
  try {
    await api.logout();
  } finally {
    state.user = null;
    loading = Promise.resolve(null);
  }
}

/** Forget the session without asking the API (it answered 401: the cookie expired). */
export function forgetSession(): void {
  state.user = null;
  loading = Promise.resolve(null);
}
