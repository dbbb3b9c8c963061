import { render, type ComponentChildren } from "preact";
import { useEffect, useErrorBoundary, useState } from "preact/hooks";
import { Link, Route, Switch, useLocation } from "wouter-preact";
import { api, ok, onToken, setToken, token, type User } from "./api/client";
import { closeEvents } from "./api/events";
import { Can, MeContext, MessageArea, notifyError } from "./ui";
import { Login } from "./pages/Login";
import { Dashboard } from "./pages/Dashboard";
import { Instances } from "./pages/Instances";
import { InstancePage } from "./pages/Instance";
import { Create } from "./pages/Create";
import { Images } from "./pages/Images";
import { Networks, StoragePools, Templates, Volumes } from "./pages/Resources";
import { Tasks } from "./pages/Tasks";
import { Hosts } from "./pages/Hosts";
import { AddressPools } from "./pages/Addresses";
import { Account, Admin } from "./pages/Admin";
import "./style.css";

const NAV: [string, string, "viewer" | "admin"][] = [
  ["/", "Dashboard", "viewer"],
  ["/instances", "Instances", "viewer"],
  ["/images", "Images", "viewer"],
  ["/networks", "Networks", "viewer"],
  ["/volumes", "Volumes", "viewer"],
  ["/storage", "Storage pools", "viewer"],
  ["/templates", "Templates", "viewer"],
  ["/tasks", "Tasks", "viewer"],
  ["/hosts", "Hosts", "viewer"],
  ["/address-pools", "Address pools", "viewer"],
  ["/admin", "Admin", "admin"],
  ["/account", "Account", "viewer"],
];

function Shell(props: { me: User }) {
  const [location] = useLocation();
  const [open, setOpen] = useState(false);
  return (
    <div class="shell">
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="top">
        <button
          type="button"
          class="menu-toggle"
          aria-expanded={open}
          aria-controls="nav"
          onClick={() => setOpen(!open)}
        >
          Menu
        </button>
        <span class="brand">LibGo</span>
        <span class="who" data-role={props.me.role}>
          {props.me.username} · {props.me.role}
        </span>
        <button type="button" class="link" onClick={logout}>
          Log out
        </button>
      </header>
      <nav id="nav" class={open ? "open" : ""} aria-label="Main">
        <ul>
          {NAV.map(([href, label, role]) => (
            <Can role={role} key={href}>
              <li>
                <Link
                  href={href}
                  aria-current={location === href ? "page" : undefined}
                  onClick={() => setOpen(false)}
                >
                  {label}
                </Link>
              </li>
            </Can>
          ))}
        </ul>
      </nav>
      <main id="main" tabIndex={-1}>
        <MessageArea />
        <PageGuard key={location}>
        <Switch>
          <Route path="/" component={Dashboard} />
          <Route path="/instances" component={Instances} />
          <Route path="/create">{() => <Create />}</Route>
          <Route path="/instances/:id">{(p) => <InstancePage id={decodeURIComponent(p.id)} />}</Route>
          <Route path="/images" component={Images} />
          <Route path="/networks" component={Networks} />
          <Route path="/volumes" component={Volumes} />
          <Route path="/storage" component={StoragePools} />
          <Route path="/templates" component={Templates} />
          <Route path="/tasks" component={Tasks} />
          <Route path="/hosts" component={Hosts} />
          <Route path="/address-pools" component={AddressPools} />
          <Route path="/admin" component={Admin} />
          <Route path="/account" component={Account} />
          <Route>
            <p role="alert">No such page.</p>
          </Route>
        </Switch>
        </PageGuard>
      </main>
    </div>
  );
}

/** A page that fails to render says so and leaves the rest of the console working (a new
 *  page, by its key, starts afresh). */
function PageGuard(props: { children: ComponentChildren }) {
  const [error, retry] = useErrorBoundary((e) => console.error("page failed:", e));
  if (error) {
    return (
      <div role="alert" class="page-error">
        <p>This page failed: {error instanceof Error ? error.message : String(error)}</p>
        <button type="button" onClick={retry}>
          Try again
        </button>
      </div>
    );
  }
  return <>{props.children}</>;
}

async function logout() {
  try {
    await ok(api.POST("/api/v1/logout"));
  } catch (e) {
    notifyError(e);
  }
  closeEvents();
  setToken(null);
}

function App() {
  const [me, setMe] = useState<User | null>(null);
  const [checking, setChecking] = useState(Boolean(token()));
  useEffect(() => {
    const load = () => {
      if (!token()) {
        setMe(null);
        setChecking(false);
        return;
      }
      ok(api.GET("/api/v1/users/me"))
        .then(setMe, () => setToken(null))
        .finally(() => setChecking(false));
    };
    load();
    return onToken(load);
  }, []);
  if (checking) return <p class="muted center">Loading…</p>;
  if (!me)
    return (
      <>
        <MessageArea />
        <Login />
      </>
    );
  return (
    <MeContext.Provider value={me}>
      <Shell me={me} />
    </MeContext.Provider>
  );
}

const root = document.getElementById("app");
if (root) render(<App />, root);
