//! `/admin/v1/environments/{env}/organizations`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use portcullis_core::ids::{OrgId, PrefixedId};
use portcullis_core::validate;
use portcullis_store::{NewOrganization, OrganizationPatch};

use super::views::{CreateOrganization, List, OrganizationView, Page, UpdateOrganization};
use crate::App;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Admin, ApiJson, ApiQuery};

/// Lower-cases, validates and de-duplicates a domain list.
pub(crate) fn domains(list: Vec<String>) -> ApiResult<Vec<String>> {
    if list.len() > 100 {
        return Err(ApiError::invalid("an organization has at most 100 domains"));
    }
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for d in list {
        let d = d.trim().to_ascii_lowercase();
        validate::domain(&d).map_err(ApiError::invalid)?;
        if out.contains(&d) {
            return Err(ApiError::invalid(format!("the domain {d} is listed twice")));
        }
        out.push(d);
    }
    out.sort();
    Ok(out)
}

fn org_id(s: &str) -> ApiResult<OrgId> {
    OrgId::parse(s).ok_or_else(|| ApiError::not_found(format!("organization {s}")))
}

#[utoipa::path(post, path = "/admin/v1/environments/{env}/organizations", tag = "organizations",
    request_body = CreateOrganization, params(("env" = String, Path, description = "Environment ID or slug")),
    responses((status = 201, body = OrganizationView), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn organization_create(
    State(app): State<App>,
    admin: Admin,
    Path(env): Path<String>,
    ApiJson(req): ApiJson<CreateOrganization>,
) -> ApiResult<(StatusCode, Json<OrganizationView>)> {
    let env = admin.environment(&app, &env).await?;
    validate::name(&req.name).map_err(ApiError::invalid)?;
    let now = app.now();
    let new = NewOrganization {
        id: app.store.new_id(now),
        name: req.name,
        domains: domains(req.domains)?,
    };
    let org = app
        .store
        .create_organization(&admin.actor(), now, &env.id, new)
        .await?;
    Ok((StatusCode::CREATED, Json(OrganizationView::from(&org))))
}

#[utoipa::path(get, path = "/admin/v1/environments/{env}/organizations", tag = "organizations",
    params(("env" = String, Path, description = "Environment ID or slug"), Page),
    responses((status = 200, body = List<OrganizationView>)))]
pub async fn organizations_list(
    State(app): State<App>,
    admin: Admin,
    Path(env): Path<String>,
    ApiQuery(page): ApiQuery<Page>,
) -> ApiResult<Json<List<OrganizationView>>> {
    let env = admin.environment(&app, &env).await?;
    let limit = page.limit()?;
    let after = page.after.as_deref().map(org_id).transpose()?;
    let orgs = app
        .store
        .list_organizations(&env.id, after.as_ref(), limit)
        .await?;
    let next = (orgs.len() == limit as usize)
        .then(|| orgs.last().map(|o| o.id.to_string()))
        .flatten();
    Ok(Json(List::new(
        orgs.iter().map(OrganizationView::from).collect(),
        next,
    )))
}

#[utoipa::path(get, path = "/admin/v1/environments/{env}/organizations/{org}", tag = "organizations",
    params(("env" = String, Path, description = "Environment ID or slug"), ("org" = String, Path)),
    responses((status = 200, body = OrganizationView), (status = 404, body = ErrorBody)))]
pub async fn organization_get(
    State(app): State<App>,
    admin: Admin,
    Path((env, org)): Path<(String, String)>,
) -> ApiResult<Json<OrganizationView>> {
    let env = admin.environment(&app, &env).await?;
    Ok(Json(OrganizationView::from(
        &app.store.get_organization(&env.id, &org_id(&org)?).await?,
    )))
}

#[utoipa::path(patch, path = "/admin/v1/environments/{env}/organizations/{org}", tag = "organizations",
    request_body = UpdateOrganization,
    params(("env" = String, Path, description = "Environment ID or slug"), ("org" = String, Path)),
    responses((status = 200, body = OrganizationView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn organization_update(
    State(app): State<App>,
    admin: Admin,
    Path((env, org)): Path<(String, String)>,
    ApiJson(req): ApiJson<UpdateOrganization>,
) -> ApiResult<Json<OrganizationView>> {
    let env = admin.environment(&app, &env).await?;
    if let Some(n) = &req.name {
        validate::name(n).map_err(ApiError::invalid)?;
    }
    let patch = OrganizationPatch {
        name: req.name,
        domains: req.domains.map(domains).transpose()?,
    };
    let org = app
        .store
        .update_organization(&admin.actor(), app.now(), &env.id, &org_id(&org)?, patch)
        .await?;
    Ok(Json(OrganizationView::from(&org)))
}

#[utoipa::path(delete, path = "/admin/v1/environments/{env}/organizations/{org}", tag = "organizations",
    params(("env" = String, Path, description = "Environment ID or slug"), ("org" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn organization_delete(
    State(app): State<App>,
    admin: Admin,
    Path((env, org)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let env = admin.environment(&app, &env).await?;
    app.store
        .delete_organization(&admin.actor(), app.now(), &env.id, &org_id(&org)?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
