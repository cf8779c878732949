//! `skiffctl api-resources`.

use anyhow::Result;

use crate::config::GlobalArgs;
use crate::discovery::ResourceType;
use crate::output;

/// Print the supported API resources on the server.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// `wide` adds verbs and categories; `name` prints only names.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// Only namespaced (true) or cluster-scoped (false) resources.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub namespaced: Option<bool>,
    /// Only resources in this API group (`""` for core).
    #[arg(long)]
    pub api_group: Option<String>,
    /// Only resources supporting these verbs.
    #[arg(long, value_delimiter = ',')]
    pub verbs: Vec<String>,
    /// Don't print headers.
    #[arg(long)]
    pub no_headers: bool,
    #[command(flatten)]
    pub global: GlobalArgs,
}

/// The rows `api-resources` prints, core first, then by group and name.
pub fn render(types: &[ResourceType], args: &Args) -> String {
    let mut list: Vec<&ResourceType> = types
        .iter()
        .filter(|t| t.preferred)
        .filter(|t| args.namespaced.is_none_or(|n| n == t.namespaced))
        .filter(|t| args.api_group.as_ref().is_none_or(|g| g == &t.group))
        .filter(|t| args.verbs.iter().all(|v| t.verbs.contains(v)))
        .collect();
    list.sort_by(|a, b| {
        (!a.group.is_empty(), &a.group, &a.plural).cmp(&(!b.group.is_empty(), &b.group, &b.plural))
    });
    if args.output.as_deref() == Some("name") {
        return list.iter().map(|t| t.qualified() + "\n").collect();
    }
    let wide = args.output.as_deref() == Some("wide");
    let mut headers: Vec<String> = ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if wide {
        headers.push("VERBS".into());
        headers.push("CATEGORIES".into());
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|t| {
            let mut row = vec![
                t.plural.clone(),
                t.short_names.join(","),
                t.api_version(),
                t.namespaced.to_string(),
                t.kind.clone(),
            ];
            if wide {
                let mut verbs = t.verbs.clone();
                verbs.sort();
                row.push(verbs.join(","));
                row.push(t.categories.join(","));
            }
            row
        })
        .collect();
    output::plain_table(&headers, &rows, args.no_headers)
}

pub async fn run(args: Args) -> Result<()> {
    let ctx = args.global.connect().await?;
    let resources = ctx.resources().await?;
    print!("{}", render(&resources.types, &args));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: Args,
    }

    #[test]
    fn core_types_come_first_with_their_short_names() {
        let r = crate::discovery::tests::sample();
        let out = render(&r.types, &T::parse_from(["x"]).a);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            "NAME          SHORTNAMES   APIVERSION   NAMESPACED   KIND"
        );
        assert_eq!(
            lines[1],
            "nodes         no           v1           false        Node"
        );
        assert_eq!(
            lines[3],
            "deployments   deploy       apps/v1      true         Deployment"
        );
        let names = render(
            &r.types,
            &T::parse_from(["x", "-o", "name", "--namespaced"]).a,
        );
        assert_eq!(names, "pods\ndeployments.apps\n");
    }
}
